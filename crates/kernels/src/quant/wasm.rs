//! The WebAssembly SIMD tile of the packed matmul ([`super::matmul`]), for the lab in the
//! browser: weight codes as 16-bit lanes times 16-bit activations with `i32x4.dot_i16x8_s`
//! (eight products into four 32-bit sums, the counterpart of x86's `vpmaddwd`). Compiled only
//! when the build enables `simd128` (`.cargo/config.toml` does for wasm32: every browser the lab
//! supports has it); there is no run-time detection in WebAssembly — a module with SIMD does not
//! compile where it is missing. The plain reference is [`super::matmul::block_scalar`]; the
//! browser tests (`crates/kernels/tests/browser.rs`) check this tile against it in Chromium.
//!
//! Three things make it cheaper than a direct port of the x86 tile (a decoding step's SmolLM2-shaped
//! Q4_1 projections in Chromium 156, one thread: 66 → 127 steps/s; `reports/lab/wasm-tile-bench`):
//! - **No widening.** On wasm32 the activations are stored in the order a 16-bit view of the code
//!   bytes yields ([`QuantizedRows::position`]): masks and shifts of one 16-byte load give four
//!   vectors of codes, where `extend` instructions would cost one more each.
//! - **Float work once per four scales.** The integer sums of four scale units — four blocks, or
//!   two blocks' halves for signed codes — are folded into one vector, converted once, and
//!   multiplied by the four scale products at once; the weights' mins meet the activations'
//!   block sums in the same vector step, instead of in a scalar loop per row.
//! - **Two weight rows per tile** ([`ROWS`]), so that a group's activations stay in registers.
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

/// The first `n` (at most 4) values of `values` as a vector, zeros after them.
#[inline(always)]
fn load_f32(values: &[f32], n: usize) -> v128 {
    if n == 4 {
        let chunk = &values[..4];
        // SAFETY: `chunk` is exactly 16 readable bytes; no alignment requirement.
        unsafe { v128_load(chunk.as_ptr().cast()) }
    } else {
        let mut padded = [0f32; 4];
        padded[..n].copy_from_slice(&values[..n]);
        // SAFETY: `padded` is 16 readable bytes.
        unsafe { v128_load(padded.as_ptr().cast()) }
    }
}

/// The code layouts ([`CodeWidth`]) as const parameters.
const FOUR: u8 = 0;
const EIGHT: u8 = 1;
const SIGNED: u8 = 2;

/// A block's codes as four vectors of eight 16-bit values: values 0, 2, …, 14; 16, 18, …, 30;
/// 1, 3, …, 15; 17, 19, …, 31 — the wasm32 order of [`QuantizedRows::position`].
#[inline(always)]
fn weight_codes<const W: u8>(codes: &[u8]) -> [v128; 4] {
    if W == FOUR {
        // 16-bit lane k holds bytes 2k and 2k + 1; byte j holds codes j (low nibble) and j + 16.
        let v = load(codes);
        let nibble = u16x8_splat(0x0F);
        [v128_and(v, nibble), v128_and(u16x8_shr(v, 4), nibble), v128_and(u16x8_shr(v, 8), nibble), u16x8_shr(v, 12)]
    } else {
        let (first, second) = (load(codes), load(&codes[16..]));
        if W == SIGNED {
            // Arithmetic shifts sign-extend each byte of the lane.
            [i16x8_shr(i16x8_shl(first, 8), 8), i16x8_shr(i16x8_shl(second, 8), 8), i16x8_shr(first, 8), i16x8_shr(second, 8)]
        } else {
            let byte = u16x8_splat(0xFF);
            [v128_and(first, byte), v128_and(second, byte), u16x8_shr(first, 8), u16x8_shr(second, 8)]
        }
    }
}

/// Block `b` of an activation row as the four vectors [`weight_codes`] pairs with.
#[inline(always)]
fn activation_codes(codes: &[i16], b: usize) -> [v128; 4] {
    let block = &codes[b * BLOCK..(b + 1) * BLOCK];
    [load_i16(block), load_i16(&block[8..]), load_i16(&block[16..]), load_i16(&block[24..])]
}

/// `[Σa, Σb, Σc, Σd]`: four vectors' lane sums in one vector.
#[inline(always)]
fn lane_sums(a: v128, b: v128, c: v128, d: v128) -> v128 {
    let ab = i32x4_add(i32x4_shuffle::<0, 1, 4, 5>(a, b), i32x4_shuffle::<2, 3, 6, 7>(a, b));
    let cd = i32x4_add(i32x4_shuffle::<0, 1, 4, 5>(c, d), i32x4_shuffle::<2, 3, 6, 7>(c, d));
    i32x4_add(i32x4_shuffle::<0, 2, 4, 6>(ab, cd), i32x4_shuffle::<1, 3, 5, 7>(ab, cd))
}

/// Blocks per group of four scale units.
const fn group_blocks(w: u8) -> usize {
    if w == SIGNED { 2 } else { 4 }
}

/// The integer sums of `n` blocks of one weight row (`codes`, from block `b0`) against their
/// activations `x`, one vector per scale unit (zeros past `n`), folded into one lane per unit.
#[inline(always)]
fn group_sums<const W: u8>(codes: &[u8], b0: usize, x: &[[v128; 4]; 4], n: usize) -> v128 {
    let block_bytes = if W == FOUR { BLOCK / 2 } else { BLOCK };
    // The group's code bytes, cut once (then each block's offset is a constant when `n` is).
    let group = &codes[b0 * block_bytes..(b0 + n) * block_bytes];
    let mut units = [i32x4_splat(0); 4];
    for (j, x) in x.iter().enumerate().take(n) {
        let w = weight_codes::<W>(&group[j * block_bytes..]);
        // Values 0–15 are vectors 0 and 2, values 16–31 vectors 1 and 3.
        let first = i32x4_add(i32x4_dot_i16x8(w[0], x[0]), i32x4_dot_i16x8(w[2], x[2]));
        let second = i32x4_add(i32x4_dot_i16x8(w[1], x[1]), i32x4_dot_i16x8(w[3], x[3]));
        if W == SIGNED {
            (units[2 * j], units[2 * j + 1]) = (first, second);
        } else {
            units[j] = i32x4_add(first, second);
        }
    }
    lane_sums(units[0], units[1], units[2], units[3])
}

fn horizontal_sum(v: v128) -> f32 {
    f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v) + f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v)
}

/// Weight rows per tile, which share the group's activation vectors. More leave V8 too few
/// registers for those (x64 has 16): a decoding step's Q4_1 projections ran at 137 steps/s with
/// 2 rows, 118 with 1, 91 with 3 and 94 with 4 (Chromium 156, one thread; the harness in
/// `reports/lab/wasm-tile-bench`).
const ROWS: usize = 2;

/// `out[c · w_rows.len() + r]` as [`super::matmul::block_scalar`] computes it.
pub fn block(w: &PackedMatrix, w_rows: Range<usize>, x: &QuantizedRows, x_rows: Range<usize>, out: &mut [f32]) {
    match w.width() {
        CodeWidth::Four => block_of::<FOUR>(w, w_rows, x, x_rows, out),
        CodeWidth::Eight => block_of::<EIGHT>(w, w_rows, x, x_rows, out),
        CodeWidth::SignedSixteens => block_of::<SIGNED>(w, w_rows, x, x_rows, out),
    }
}

/// One group of `N` blocks from `b0` into the tile's accumulators (`N` a constant, so that every
/// length below is one: a run-time count of blocks costs more than the group's arithmetic).
#[inline(always)]
fn group_step<const W: u8, const N: usize>(
    acc: &mut [v128; ROWS],
    weight_rows: &[(&[u8], &[f32], &[f32]); ROWS],
    xq: &[i16],
    xs: &[f32],
    xsum: &[f32],
    b0: usize,
) {
    let n = N;
    let x: [[v128; 4]; 4] = std::array::from_fn(|j| if j < n { activation_codes(xq, b0 + j) } else { [i32x4_splat(0); 4] });
    // The activations' scale for each of the group's four units (each block's twice for signed
    // codes, whose units are half blocks), and their block sums.
    let (x_scales, x_sums) = if W == SIGNED {
        let pair = load_f32(&xs[b0..], n);
        (i32x4_shuffle::<0, 0, 1, 1>(pair, pair), f32x4_splat(0.0))
    } else {
        (load_f32(&xs[b0..], n), load_f32(&xsum[b0..], n))
    };
    let (units_from, units) = if W == SIGNED { (2 * b0, 2 * n) } else { (b0, n) };
    for (a, &(codes, scales, mins)) in acc.iter_mut().zip(weight_rows) {
        let sums = group_sums::<W>(codes, b0, &x, n);
        let scaled = f32x4_mul(f32x4_convert_i32x4(sums), f32x4_mul(load_f32(&scales[units_from..], units), x_scales));
        // The weights' mins multiply the activations' block sums.
        let mins = if W == SIGNED { scaled } else { f32x4_add(scaled, f32x4_mul(load_f32(&mins[b0..], n), x_sums)) };
        *a = f32x4_add(*a, mins);
    }
}

fn block_of<const W: u8>(w: &PackedMatrix, w_rows: Range<usize>, x: &QuantizedRows, x_rows: Range<usize>, out: &mut [f32]) {
    let nr = w_rows.len();
    let nb = w.blocks_per_row();
    let per_group = group_blocks(W);
    for (oc, c) in x_rows.enumerate() {
        let (xq, xs, xsum) = x.row(c);
        let mut r = 0;
        while r < nr {
            let rows = ROWS.min(nr - r);
            // A short last tile repeats its last row in the unused slots (computed, not written).
            let weight_rows: [_; ROWS] = std::array::from_fn(|i| w.row(w_rows.start + r + i.min(rows - 1)));
            let mut acc = [f32x4_splat(0.0); ROWS];
            let full = nb / per_group * per_group;
            let mut b0 = 0;
            while b0 < full {
                if W == SIGNED {
                    group_step::<W, 2>(&mut acc, &weight_rows, xq, xs, xsum, b0);
                } else {
                    group_step::<W, 4>(&mut acc, &weight_rows, xq, xs, xsum, b0);
                }
                b0 += per_group;
            }
            match nb - b0 {
                1 => group_step::<W, 1>(&mut acc, &weight_rows, xq, xs, xsum, b0),
                2 => group_step::<W, 2>(&mut acc, &weight_rows, xq, xs, xsum, b0),
                3 => group_step::<W, 3>(&mut acc, &weight_rows, xq, xs, xsum, b0),
                _ => {}
            }
            for (i, a) in acc.iter().enumerate().take(rows) {
                out[oc * nr + r + i] = horizontal_sum(*a);
            }
            r += rows;
        }
    }
}
