//! The WebAssembly SIMD tile of the packed matmul ([`super::matmul`]), for the lab in the
//! browser: weight codes widened to 16 bits times 16-bit activations with `i32x4.dot_i16x8_s`
//! (eight products into four 32-bit sums, the counterpart of x86's `vpmaddwd`), one float
//! conversion and scale per block (per half block for signed codes, Q3_K/Q6_K). Compiled only when the build enables `simd128`
//! (`.cargo/config.toml` does for wasm32: every browser the lab supports has it); there is no
//! run-time detection in WebAssembly — a module with SIMD does not compile where it is missing.
//! The plain reference is [`super::matmul::block_scalar`]; the browser tests
//! (`crates/kernels/tests/browser.rs`) check this tile against it in Chromium.
//!
//! `unsafe` only for the 16-byte loads, each from a slice cut to exactly 16 bytes first (a
//! bounds-checked index), so no load reads past its slice.
#![allow(unsafe_code)]

use std::arch::wasm32::*;
use std::ops::Range;

use super::activation::QuantizedRows;
use super::packed::{BLOCK, CodeWidth, PackedMatrix};

/// 16 bytes from the start of `bytes` (which must hold them: the slice is indexed first).
#[inline(always)]
fn load(bytes: &[u8]) -> v128 {
    let chunk = &bytes[..16];
    // SAFETY: `chunk` is exactly 16 readable bytes; `v128_load` has no alignment requirement.
    unsafe { v128_load(chunk.as_ptr().cast()) }
}

/// Eight 16-bit values from the start of `values`.
#[inline(always)]
fn load_i16(values: &[i16]) -> v128 {
    let chunk = &values[..8];
    // SAFETY: `chunk` is exactly 16 readable bytes; no alignment requirement.
    unsafe { v128_load(chunk.as_ptr().cast()) }
}

/// The code layouts ([`CodeWidth`]) as const parameters.
const FOUR: u8 = 0;
const EIGHT: u8 = 1;
const SIGNED: u8 = 2;

/// Block `b` of a row's weight codes as four vectors of eight 16-bit values, in value order.
#[inline(always)]
fn weight_codes<const W: u8>(codes: &[u8], b: usize) -> [v128; 4] {
    if W == FOUR {
        // Byte j of a block holds codes j (low nibble) and j + 16 (high nibble).
        let v = load(&codes[b * 16..]);
        // A 16-bit shift and the mask do what an 8-bit shift would (x86 has none to map it to).
        let mask = u8x16_splat(0x0F);
        let (low, high) = (v128_and(v, mask), v128_and(u16x8_shr(v, 4), mask));
        [u16x8_extend_low_u8x16(low), u16x8_extend_high_u8x16(low), u16x8_extend_low_u8x16(high), u16x8_extend_high_u8x16(high)]
    } else if W == SIGNED {
        let (first, second) = (load(&codes[b * BLOCK..]), load(&codes[b * BLOCK + 16..]));
        [i16x8_extend_low_i8x16(first), i16x8_extend_high_i8x16(first), i16x8_extend_low_i8x16(second), i16x8_extend_high_i8x16(second)]
    } else {
        let (first, second) = (load(&codes[b * BLOCK..]), load(&codes[b * BLOCK + 16..]));
        [u16x8_extend_low_u8x16(first), u16x8_extend_high_u8x16(first), u16x8_extend_low_u8x16(second), u16x8_extend_high_u8x16(second)]
    }
}

/// Block `b` of an activation row as four vectors of eight values, in value order (wherever the
/// block-pair layout put them: chunks 16 apart inside a pair, 8 apart in an odd last block).
#[inline(always)]
fn activation_codes(codes: &[i16], nb: usize, b: usize) -> [v128; 4] {
    let (start, step) = if b < nb / 2 * 2 { ((b / 2) * 2 * BLOCK + (b % 2) * 8, 16) } else { (b * BLOCK, 8) };
    let block = &codes[start..start + 3 * step + 8];
    [load_i16(block), load_i16(&block[step..]), load_i16(&block[2 * step..]), load_i16(&block[3 * step..])]
}

/// Σ w·x over each half of a block (values 0–15, 16–31), four 32-bit partial sums each.
#[inline(always)]
fn half_dots(w: &[v128; 4], x: &[v128; 4]) -> (v128, v128) {
    (
        i32x4_add(i32x4_dot_i16x8(w[0], x[0]), i32x4_dot_i16x8(w[1], x[1])),
        i32x4_add(i32x4_dot_i16x8(w[2], x[2]), i32x4_dot_i16x8(w[3], x[3])),
    )
}

fn horizontal_sum(v: v128) -> f32 {
    f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v) + f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v)
}

/// Weight rows per tile: the activation block is loaded once for all of them.
const ROWS: usize = 4;

/// `out[c · w_rows.len() + r]` as [`super::matmul::block_scalar`] computes it.
pub fn block(w: &PackedMatrix, w_rows: Range<usize>, x: &QuantizedRows, x_rows: Range<usize>, out: &mut [f32]) {
    match w.width() {
        CodeWidth::Four => block_of::<FOUR>(w, w_rows, x, x_rows, out),
        CodeWidth::Eight => block_of::<EIGHT>(w, w_rows, x, x_rows, out),
        CodeWidth::SignedSixteens => block_of::<SIGNED>(w, w_rows, x, x_rows, out),
    }
}

fn block_of<const W: u8>(w: &PackedMatrix, w_rows: Range<usize>, x: &QuantizedRows, x_rows: Range<usize>, out: &mut [f32]) {
    let nr = w_rows.len();
    let nb = w.blocks_per_row();
    let block_bytes = w.width().block_bytes();
    for (oc, c) in x_rows.enumerate() {
        let (xq, xs, xsum) = x.row(c);
        let (xs, xsum) = (&xs[..nb], &xsum[..nb]);
        let mut r = 0;
        while r < nr {
            let rows = ROWS.min(nr - r);
            // A short last tile repeats its last row in the unused slots (computed, not written).
            let row = |i: usize| w.row(w_rows.start + r + i.min(rows - 1));
            let weight_rows = [row(0), row(1), row(2), row(3)];
            // Codes and scales cut to exactly `nb` blocks, so the loop's indexing needs no checks;
            // signed codes have a scale per half block and no mins.
            let (scales_per_block, n_mins) = if W == SIGNED { (2, 0) } else { (1, nb) };
            let codes = weight_rows.map(|(c, _, _)| &c[..nb * block_bytes]);
            let scales = weight_rows.map(|(_, s, _)| &s[..nb * scales_per_block]);
            let mut acc = [f32x4_splat(0.0); ROWS];
            for b in 0..nb {
                let xv = activation_codes(xq, nb, b);
                let xscale = xs[b];
                for i in 0..ROWS {
                    let (first, second) = half_dots(&weight_codes::<W>(codes[i], b), &xv);
                    if W == SIGNED {
                        let (s0, s1) = (scales[i][2 * b] * xscale, scales[i][2 * b + 1] * xscale);
                        acc[i] = f32x4_add(acc[i], f32x4_mul(f32x4_convert_i32x4(first), f32x4_splat(s0)));
                        acc[i] = f32x4_add(acc[i], f32x4_mul(f32x4_convert_i32x4(second), f32x4_splat(s1)));
                    } else {
                        let products = f32x4_convert_i32x4(i32x4_add(first, second));
                        acc[i] = f32x4_add(acc[i], f32x4_mul(products, f32x4_splat(scales[i][b] * xscale)));
                    }
                }
            }
            for (i, (a, &(_, _, wm))) in acc.iter().zip(&weight_rows).enumerate().take(rows) {
                // The weights' mins multiply the activations' block sums.
                let mins: f32 = wm[..n_mins].iter().zip(xsum).map(|(m, s)| m * s).sum();
                out[oc * nr + r + i] = horizontal_sum(*a) + mins;
            }
            r += rows;
        }
    }
}
