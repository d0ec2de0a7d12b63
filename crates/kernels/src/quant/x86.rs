//! The x86-64 SIMD tiles of the packed matmul ([`super::matmul`]): weight codes widened to 16
//! bits times 16-bit activations, sixteen products per instruction into eight 32-bit sums —
//! AVX-512 VNNI's `vpdpwssd` (multiply and accumulate in one) or AVX2's `vpmaddwd` for CPUs
//! without it. Two blocks go through each float conversion: their sums sit in the two 128-bit
//! halves of one register. Signed codes (Q3_K, Q6_K) scale each 16-element half of a block on its
//! own: their two halves' sums stay apart until each has met its scale. The plain reference is
//! [`super::matmul::block_scalar`]; the tests in `matmul.rs` check every tile set against it.
//!
//! The one place in the workspace with SIMD `unsafe`: the loads read 16 or 32 bytes at offsets
//! the tile computes from the matrix's own block counts (in bounds by construction), and the
//! `#[target_feature]` functions are reached only through an [`X86Tiles`] value, which only
//! [`X86Tiles::detect`] makes after checking the CPU.
#![allow(unsafe_code)]

use std::arch::x86_64::*;
use std::ops::Range;

use super::activation::QuantizedRows;
use super::packed::{BLOCK, CodeWidth, PackedMatrix};

/// Which instruction set the tiles use; a value exists only if the CPU has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct X86Tiles(Level);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Avx512Vnni,
    Avx2,
}

impl X86Tiles {
    /// Every tile set this CPU can run, fastest first.
    pub fn detect() -> Vec<X86Tiles> {
        let mut found = Vec::new();
        if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni")
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
        {
            found.push(X86Tiles(Level::Avx512Vnni));
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            found.push(X86Tiles(Level::Avx2));
        }
        found
    }

    pub fn name(self) -> &'static str {
        match self.0 {
            Level::Avx512Vnni => "avx512-vnni",
            Level::Avx2 => "avx2",
        }
    }

    /// `out[c · w_rows.len() + r] = Σ_k w[r][k] · x[c][k]` over the given rows (see
    /// [`super::matmul::block_scalar`] for the contract).
    pub fn block(self, w: &PackedMatrix, w_rows: Range<usize>, x: &QuantizedRows, x_rows: Range<usize>, out: &mut [f32]) {
        assert_eq!(out.len(), w_rows.len() * x_rows.len());
        assert!(w_rows.end <= w.rows() && x_rows.end <= x.rows && w.cols() == x.cols);
        // SAFETY: `self` exists only when `detect` found the features these functions enable.
        unsafe {
            match (self.0, w.width()) {
                (Level::Avx512Vnni, CodeWidth::Four) => block_vnni::<FOUR>(w, w_rows, x, x_rows, out),
                (Level::Avx512Vnni, CodeWidth::Eight) => block_vnni::<EIGHT>(w, w_rows, x, x_rows, out),
                (Level::Avx512Vnni, CodeWidth::SignedSixteens) => block_vnni::<SIGNED>(w, w_rows, x, x_rows, out),
                (Level::Avx2, CodeWidth::Four) => block_avx2::<FOUR>(w, w_rows, x, x_rows, out),
                (Level::Avx2, CodeWidth::Eight) => block_avx2::<EIGHT>(w, w_rows, x, x_rows, out),
                (Level::Avx2, CodeWidth::SignedSixteens) => block_avx2::<SIGNED>(w, w_rows, x, x_rows, out),
            }
        }
    }
}

/// The tiles' code layouts ([`CodeWidth`]) as const parameters.
const FOUR: u8 = 0;
const EIGHT: u8 = 1;
const SIGNED: u8 = 2;

/// Sum of the eight lanes.
#[target_feature(enable = "avx2,fma")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// 16 weight codes widened to 16 bits, as the activations of the same positions are stored.
type Codes16 = [__m256i; 4];

/// Blocks `b` and `b + 1` of a row's codes, widened to 16 bits in the activations' block-pair
/// layout: vector `k` holds values `8k..8k+8` of block `b` (low half) and of block `b + 1` (high
/// half).
///
/// # Safety
/// `codes` holds at least `b + 2` blocks; AVX2 is available.
#[target_feature(enable = "avx2,fma")]
unsafe fn load_code_pair<const W: u8>(codes: &[u8], b: usize) -> Codes16 {
    // `first`: values 0–15 of both blocks (block b in the low half), `second`: values 16–31.
    let (first, second) = if W == FOUR {
        debug_assert!(codes.len() >= (b + 2) * 16);
        // SAFETY: 32 bytes at b·16 (blocks b and b + 1), in bounds per the contract. Byte j of a
        // block holds codes j (low nibble) and j + 16 (high nibble).
        let v = unsafe { _mm256_loadu_si256(codes.as_ptr().add(b * 16).cast()) };
        let mask = _mm256_set1_epi8(0x0F);
        (_mm256_and_si256(v, mask), _mm256_and_si256(_mm256_srli_epi16(v, 4), mask))
    } else {
        debug_assert!(codes.len() >= (b + 2) * 32);
        // SAFETY: 64 bytes at b·32, in bounds per the contract.
        let (a, c) =
            unsafe { (_mm256_loadu_si256(codes.as_ptr().add(b * 32).cast()), _mm256_loadu_si256(codes.as_ptr().add(b * 32 + 32).cast())) };
        (_mm256_permute2x128_si256(a, c, 0x20), _mm256_permute2x128_si256(a, c, 0x31))
    };
    // Widening interleaves each byte with its high byte: zero, or the sign for signed codes.
    let zero = _mm256_setzero_si256();
    let (high_first, high_second) =
        if W == SIGNED { (_mm256_cmpgt_epi8(zero, first), _mm256_cmpgt_epi8(zero, second)) } else { (zero, zero) };
    [
        _mm256_unpacklo_epi8(first, high_first),
        _mm256_unpackhi_epi8(first, high_first),
        _mm256_unpacklo_epi8(second, high_second),
        _mm256_unpackhi_epi8(second, high_second),
    ]
}

/// Block `b` alone (a row's odd last block), values in order: vector `k` holds values
/// `16k..16k+16`, the other two are zero.
///
/// # Safety
/// `codes` holds at least `b + 1` blocks; AVX2 is available.
#[target_feature(enable = "avx2,fma")]
unsafe fn load_codes<const W: u8>(codes: &[u8], b: usize) -> Codes16 {
    let (first, second) = if W == FOUR {
        debug_assert!(codes.len() >= (b + 1) * 16);
        // SAFETY: 16 bytes at b·16, in bounds per the contract.
        let q = unsafe { _mm_loadu_si128(codes.as_ptr().add(b * 16).cast()) };
        let mask = _mm_set1_epi8(0x0F);
        (_mm_and_si128(q, mask), _mm_and_si128(_mm_srli_epi16(q, 4), mask))
    } else {
        debug_assert!(codes.len() >= (b + 1) * 32);
        // SAFETY: 32 bytes at b·32, in bounds per the contract.
        unsafe { (_mm_loadu_si128(codes.as_ptr().add(b * 32).cast()), _mm_loadu_si128(codes.as_ptr().add(b * 32 + 16).cast())) }
    };
    let zero = _mm256_setzero_si256();
    if W == SIGNED {
        [_mm256_cvtepi8_epi16(first), _mm256_cvtepi8_epi16(second), zero, zero]
    } else {
        [_mm256_cvtepu8_epi16(first), _mm256_cvtepu8_epi16(second), zero, zero]
    }
}

/// The activation codes of blocks `b` (and `b + 1`, when `pair`) as the matching [`Codes16`].
///
/// # Safety
/// `codes` holds the row (at least `b + 1`, or `b + 2` when `pair`, blocks); AVX2 is available.
#[target_feature(enable = "avx2,fma")]
unsafe fn load_activations(codes: &[i16], b: usize, pair: bool) -> Codes16 {
    let count = if pair { 4 } else { 2 };
    debug_assert!(codes.len() >= b * BLOCK + count * 16);
    let mut out = [_mm256_setzero_si256(); 4];
    for (k, v) in out.iter_mut().enumerate().take(count) {
        // SAFETY: 16 values at b·32 + 16k, in bounds per the contract (a pair's 64 values, or a
        // single block's 32, start at b·32 in the block-pair layout).
        *v = unsafe { _mm256_loadu_si256(codes.as_ptr().add(b * BLOCK + 16 * k).cast()) };
    }
    out
}

/// `[s[b] ×4, s[b + 1] ×4]`, the scales of a block pair in the lanes of their sums.
///
/// # Safety
/// `scales` holds at least `b + 2` values; AVX2 is available.
#[target_feature(enable = "avx2,fma")]
unsafe fn scale_pair(scales: &[f32], b: usize) -> __m256 {
    debug_assert!(scales.len() >= b + 2);
    // SAFETY: 8 bytes at b, in bounds per the contract.
    let two = unsafe { _mm_castsi128_ps(_mm_loadl_epi64(scales.as_ptr().add(b).cast())) };
    _mm256_permutevar8x32_ps(_mm256_castps128_ps256(two), _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1))
}

/// The half-block scales of a block pair of signed codes (`scales[2b + h]` scales half `h` of
/// block `b`) in the lanes of their sums: `[s[2b] ×4, s[2b + 2] ×4]` for the first halves,
/// `[s[2b + 1] ×4, s[2b + 3] ×4]` for the second.
///
/// # Safety
/// `scales` holds at least `2b + 4` values; AVX2 is available.
#[target_feature(enable = "avx2,fma")]
unsafe fn half_scale_pairs(scales: &[f32], b: usize) -> (__m256, __m256) {
    debug_assert!(scales.len() >= 2 * b + 4);
    // SAFETY: 16 bytes at 2b, in bounds per the contract.
    let four = _mm256_castps128_ps256(unsafe { _mm_loadu_ps(scales.as_ptr().add(2 * b)) });
    (
        _mm256_permutevar8x32_ps(four, _mm256_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2)),
        _mm256_permutevar8x32_ps(four, _mm256_setr_epi32(1, 1, 1, 1, 3, 3, 3, 3)),
    )
}

/// Σ w·x over the vectors, eight 32-bit sums, without VNNI.
#[target_feature(enable = "avx2,fma")]
fn dot_avx2(w: &Codes16, x: &Codes16) -> __m256i {
    let a = _mm256_add_epi32(_mm256_madd_epi16(w[0], x[0]), _mm256_madd_epi16(w[1], x[1]));
    let b = _mm256_add_epi32(_mm256_madd_epi16(w[2], x[2]), _mm256_madd_epi16(w[3], x[3]));
    _mm256_add_epi32(a, b)
}

/// [`dot_avx2`] of vectors 0–1 and of vectors 2–3 apart (the two 16-value halves of each block).
#[target_feature(enable = "avx2,fma")]
fn half_dots_avx2(w: &Codes16, x: &Codes16) -> (__m256i, __m256i) {
    (
        _mm256_add_epi32(_mm256_madd_epi16(w[0], x[0]), _mm256_madd_epi16(w[1], x[1])),
        _mm256_add_epi32(_mm256_madd_epi16(w[2], x[2]), _mm256_madd_epi16(w[3], x[3])),
    )
}

/// Σ w·x over the vectors, eight 32-bit sums: each product accumulates onto the last.
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
fn dot_vnni(w: &Codes16, x: &Codes16) -> __m256i {
    let mut acc = _mm256_madd_epi16(w[0], x[0]);
    acc = _mm256_dpwssd_epi32(acc, w[1], x[1]);
    acc = _mm256_dpwssd_epi32(acc, w[2], x[2]);
    _mm256_dpwssd_epi32(acc, w[3], x[3])
}

/// [`dot_vnni`] of vectors 0–1 and of vectors 2–3 apart (the two 16-value halves of each block).
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
fn half_dots_vnni(w: &Codes16, x: &Codes16) -> (__m256i, __m256i) {
    (_mm256_dpwssd_epi32(_mm256_madd_epi16(w[0], x[0]), w[1], x[1]), _mm256_dpwssd_epi32(_mm256_madd_epi16(w[2], x[2]), w[3], x[3]))
}

/// Generates a tile function (R weight rows × C activation rows) and the block loop over it for
/// one instruction set; the two sets differ only in the features enabled and the dot products.
macro_rules! tiles {
    ($block:ident, $tile:ident, $features:literal, $dot:ident, $half_dots:ident) => {
        /// # Safety
        /// The CPU has the enabled features; rows are in range (checked by `X86Tiles::block`).
        #[target_feature(enable = $features)]
        unsafe fn $block<const W: u8>(w: &PackedMatrix, w_rows: Range<usize>, x: &QuantizedRows, x_rows: Range<usize>, out: &mut [f32]) {
            let (nr, nc) = (w_rows.len(), x_rows.len());
            // One activation row (decoding): four weight rows per tile. Several: 4 × 4.
            if nc == 1 {
                let main = nr / 4 * 4;
                for r in (0..main).step_by(4) {
                    unsafe { $tile::<4, 1, W>(w, w_rows.start + r, x, x_rows.start, out, nr, r, 0) };
                }
                for r in main..nr {
                    unsafe { $tile::<1, 1, W>(w, w_rows.start + r, x, x_rows.start, out, nr, r, 0) };
                }
                return;
            }
            let (r_main, c_main) = (nr / 4 * 4, nc / 4 * 4);
            for r in (0..r_main).step_by(4) {
                for c in (0..c_main).step_by(4) {
                    unsafe { $tile::<4, 4, W>(w, w_rows.start + r, x, x_rows.start + c, out, nr, r, c) };
                }
                for c in c_main..nc {
                    unsafe { $tile::<4, 1, W>(w, w_rows.start + r, x, x_rows.start + c, out, nr, r, c) };
                }
            }
            for r in r_main..nr {
                for c in (0..c_main).step_by(4) {
                    unsafe { $tile::<1, 4, W>(w, w_rows.start + r, x, x_rows.start + c, out, nr, r, c) };
                }
                for c in c_main..nc {
                    unsafe { $tile::<1, 1, W>(w, w_rows.start + r, x, x_rows.start + c, out, nr, r, c) };
                }
            }
        }

        /// Weight rows `r0..r0+R` × activation rows `c0..c0+C`, written to
        /// `out[(oc + j) · stride + or + i]`.
        ///
        /// # Safety
        /// As for the block function.
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $tile<const R: usize, const C: usize, const W: u8>(
            w: &PackedMatrix,
            r0: usize,
            x: &QuantizedRows,
            c0: usize,
            out: &mut [f32],
            stride: usize,
            or: usize,
            oc: usize,
        ) {
            let nb = w.blocks_per_row();
            // Signed codes have a scale per half block and no mins.
            let (n_scales, n_mins) = if W == SIGNED { (2 * nb, 0) } else { (nb, nb) };
            // Scales sliced to exactly their count so the loops index them without bounds checks.
            let mut wcodes = [&[][..]; R];
            let mut wscales = [&[][..]; R];
            let mut wmins = [&[][..]; R];
            for i in 0..R {
                let (codes, scales, mins) = w.row(r0 + i);
                (wcodes[i], wscales[i], wmins[i]) = (codes, &scales[..n_scales], &mins[..n_mins]);
            }
            let mut xcodes = [&[][..]; C];
            let mut xscales = [&[][..]; C];
            let mut xsums = [&[][..]; C];
            for j in 0..C {
                let (codes, scales, sums) = x.row(c0 + j);
                (xcodes[j], xscales[j], xsums[j]) = (codes, &scales[..nb], &sums[..nb]);
            }
            let mut acc = [[_mm256_setzero_ps(); C]; R];
            let mut wv = [[_mm256_setzero_si256(); 4]; R];
            // The weights' scales in their sums' lanes; `ws2` holds the second halves' (signed).
            let mut ws = [_mm256_setzero_ps(); R];
            let mut ws2 = [_mm256_setzero_ps(); R];
            // Two blocks per step (lanes 0–3 block b, 4–7 block b + 1): per weight × activation
            // row, one integer dot, one conversion, one scale multiply, one accumulate (two of
            // each for signed codes, one per half).
            let pairs_end = nb / 2 * 2;
            for b in (0..pairs_end).step_by(2) {
                for i in 0..R {
                    wv[i] = unsafe { load_code_pair::<W>(wcodes[i], b) };
                    if W == SIGNED {
                        (ws[i], ws2[i]) = unsafe { half_scale_pairs(wscales[i], b) };
                    } else {
                        ws[i] = unsafe { scale_pair(wscales[i], b) };
                    }
                }
                // Activations one row at a time keep the live registers under AVX-512's 32.
                for j in 0..C {
                    let xv = unsafe { load_activations(xcodes[j], b, true) };
                    let xs = unsafe { scale_pair(xscales[j], b) };
                    for i in 0..R {
                        if W == SIGNED {
                            let (first, second) = $half_dots(&wv[i], &xv);
                            acc[i][j] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(first), xs), ws[i], acc[i][j]);
                            acc[i][j] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(second), xs), ws2[i], acc[i][j]);
                        } else {
                            let dot = _mm256_mul_ps(_mm256_cvtepi32_ps($dot(&wv[i], &xv)), xs);
                            acc[i][j] = _mm256_fmadd_ps(dot, ws[i], acc[i][j]);
                        }
                    }
                }
            }
            // An odd last block alone, its scales broadcast to every lane; vector 0 holds its
            // first half, vector 1 its second.
            for b in pairs_end..nb {
                for i in 0..R {
                    wv[i] = unsafe { load_codes::<W>(wcodes[i], b) };
                    if W == SIGNED {
                        (ws[i], ws2[i]) = (_mm256_set1_ps(wscales[i][2 * b]), _mm256_set1_ps(wscales[i][2 * b + 1]));
                    } else {
                        ws[i] = _mm256_set1_ps(wscales[i][b]);
                    }
                }
                for j in 0..C {
                    let xv = unsafe { load_activations(xcodes[j], b, false) };
                    let xs = _mm256_set1_ps(xscales[j][b]);
                    for i in 0..R {
                        if W == SIGNED {
                            let first = _mm256_madd_epi16(wv[i][0], xv[0]);
                            let second = _mm256_madd_epi16(wv[i][1], xv[1]);
                            acc[i][j] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(first), xs), ws[i], acc[i][j]);
                            acc[i][j] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(second), xs), ws2[i], acc[i][j]);
                        } else {
                            let dot = _mm256_mul_ps(_mm256_cvtepi32_ps($dot(&wv[i], &xv)), xs);
                            acc[i][j] = _mm256_fmadd_ps(dot, ws[i], acc[i][j]);
                        }
                    }
                }
            }
            for i in 0..R {
                for j in 0..C {
                    // The mins multiply the activations' block sums, eight blocks at a time
                    // (none for signed codes: `n_mins` is 0).
                    let mut total = acc[i][j];
                    let mut b = 0;
                    while b + 8 <= n_mins {
                        // SAFETY: eight values at b < n_mins - 7 of slices of length n_mins ≤ nb.
                        let (m, s) = unsafe { (_mm256_loadu_ps(wmins[i].as_ptr().add(b)), _mm256_loadu_ps(xsums[j].as_ptr().add(b))) };
                        total = _mm256_fmadd_ps(m, s, total);
                        b += 8;
                    }
                    let tail: f32 = wmins[i][b..].iter().zip(&xsums[j][b..n_mins]).map(|(m, s)| m * s).sum();
                    out[(oc + j) * stride + or + i] = hsum(total) + tail;
                }
            }
        }
    };
}

tiles!(block_vnni, tile_vnni, "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni", dot_vnni, half_dots_vnni);
tiles!(block_avx2, tile_avx2, "avx2,fma", dot_avx2, half_dots_avx2);
