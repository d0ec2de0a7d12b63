//! Activations quantized to 16 bits per 32-element block for the integer dot products:
//! `x ≈ d · q` with `q ∈ [-32767, 32767]`, `d = max|x| / 32767`, and `s = d · Σq` per block (the
//! part of the dot product the weights' mins multiply).
//!
//! llama.cpp quantizes activations to 8 bits (`quantize_row_q8_1`). On SmolLM2 that moved bits
//! per character by up to 0.03 against f32 activations: the decoder's massive activations
//! (a few features hundreds of times larger than the rest, Kim et al. 2024) take a block's whole
//! 8-bit range and flush its other 31 values to zero. 16 bits keep them (error ≈ 2⁻¹⁵ of a block's
//! largest value) for about a third more integer work, and decoding is memory-bound either way.
//!
//! Layout, chosen for the target's SIMD tile ([`QuantizedRows::position`] maps):
//! - **wasm32** (`wasm.rs`): each block on its own, in the order a 16-bit view of the weight's
//!   code bytes yields — values `0, 2, …, 14`, then `16, 18, …, 30`, `1, 3, …, 15`,
//!   `17, 19, …, 31` — so the tile masks and shifts codes into place instead of widening them.
//! - **elsewhere** (`x86.rs`): the codes of blocks `2p` and `2p + 1` of a row are interleaved in
//!   8-value chunks — `[2p: 0–7, 2p+1: 0–7, 2p: 8–15, 2p+1: 8–15, …]` — so each 256-bit load
//!   holds eight values of each block, one per 128-bit half, and the sums of the two blocks stay in
//!   separate lanes. A row's odd last block is stored in order.

use super::packed::BLOCK;

/// Largest code of a 16-bit block.
const CODE_MAX: f32 = 32767.0;

/// `rows × cols` activations in 16-bit blocks (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedRows {
    pub rows: usize,
    pub cols: usize,
    /// `rows × cols`, each row in the block-pair layout.
    pub codes: Vec<i16>,
    /// `rows × cols / 32` each.
    pub scales: Vec<f32>,
    pub sums: Vec<f32>,
}

impl QuantizedRows {
    /// Quantizes `x` (`rows × cols`, row-major; `cols` a multiple of 32 — the caller checked).
    pub fn quantize(x: &[f32], rows: usize, cols: usize) -> Self {
        debug_assert_eq!(x.len(), rows * cols);
        debug_assert_eq!(cols % BLOCK, 0);
        let nb = cols / BLOCK;
        let mut out = QuantizedRows {
            rows,
            cols,
            codes: vec![0; x.len()],
            scales: Vec::with_capacity(rows * nb),
            sums: Vec::with_capacity(rows * nb),
        };
        // Adding and subtracting 1.5·2²³ rounds |v| < 2²² to the nearest integer (ties to even)
        // in two float additions the compiler vectorises, where `f32::round` is a libm call per
        // value.
        const ROUND: f32 = 12_582_912.0;
        let mut block_codes = [0i16; BLOCK];
        for (r, row) in x.chunks_exact(cols).enumerate() {
            let codes = &mut out.codes[r * cols..(r + 1) * cols];
            for (b, block) in row.chunks_exact(BLOCK).enumerate() {
                let amax = block.iter().map(|v| v.abs()).fold(0f32, |m, v| if v > m { v } else { m });
                // A NaN or infinite input makes the block's scale NaN, so the outputs it feeds are
                // NaN as on the f32 path (not a silently zeroed value).
                let d = if block.iter().all(|v| v.is_finite()) { amax / CODE_MAX } else { f32::NAN };
                let id = if d > 0.0 { 1.0 / d } else { 0.0 };
                let mut sum = 0i32;
                for (q, v) in block_codes.iter_mut().zip(block) {
                    // |v · id| ≤ 32767 by construction; `as` saturates NaN to 0.
                    *q = ((v * id + ROUND) - ROUND) as i16;
                    sum += *q as i32;
                }
                for (j, &q) in block_codes.iter().enumerate() {
                    codes[Self::position(nb, b, j)] = q;
                }
                out.scales.push(d);
                out.sums.push(d * sum as f32);
            }
        }
        out
    }

    /// Where value `j` of block `b` sits in a row of `nb` blocks (see the module docs).
    pub fn position(nb: usize, b: usize, j: usize) -> usize {
        if cfg!(target_arch = "wasm32") { Self::position_in_lane_order(b, j) } else { Self::position_in_block_pairs(nb, b, j) }
    }

    /// The wasm32 layout: each block in the order of a 16-bit view of its code bytes.
    fn position_in_lane_order(b: usize, j: usize) -> usize {
        let (half, k) = (j / 16, j % 16);
        b * BLOCK + (k % 2) * 16 + half * 8 + k / 2
    }

    /// The x86 layout: blocks interleaved in pairs, 8 values at a time.
    fn position_in_block_pairs(nb: usize, b: usize, j: usize) -> usize {
        if b < nb / 2 * 2 {
            let (pair, second) = (b / 2, b % 2);
            pair * 2 * BLOCK + (j / 8) * 16 + second * 8 + j % 8
        } else {
            b * BLOCK + j
        }
    }

    pub fn blocks_per_row(&self) -> usize {
        self.cols / BLOCK
    }

    /// Codes (block-pair layout), scales and sums of row `row`.
    pub fn row(&self, row: usize) -> (&[i16], &[f32], &[f32]) {
        let nb = self.blocks_per_row();
        (&self.codes[row * self.cols..(row + 1) * self.cols], &self.scales[row * nb..(row + 1) * nb], &self.sums[row * nb..(row + 1) * nb])
    }

    /// The quantized values as f32 in plain row-major order (what the integer kernels multiply,
    /// for the references).
    pub fn dequantize(&self) -> Vec<f32> {
        let nb = self.blocks_per_row();
        let mut out = Vec::with_capacity(self.codes.len());
        for r in 0..self.rows {
            let (codes, scales, _) = self.row(r);
            for (b, scale) in scales.iter().enumerate() {
                out.extend((0..BLOCK).map(|j| codes[Self::position(nb, b, j)] as f32 * scale));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_span_the_block_and_sums_match() {
        let x: Vec<f32> = (0..96).map(|i| (i as f32 - 20.0) * 0.1).collect();
        let q = QuantizedRows::quantize(&x, 1, 96);
        assert_eq!(q.codes.iter().map(|c| c.unsigned_abs()).max(), Some(32767));
        let back = q.dequantize();
        for (i, (a, b)) in back.iter().zip(&x).enumerate() {
            assert!((a - b).abs() <= q.scales[i / 32] / 2.0 + 1e-6, "value {i}: {a} vs {b}");
        }
        let s0: f32 = back[..32].iter().sum();
        assert!((q.sums[0] - s0).abs() < 1e-3, "{} vs {s0}", q.sums[0]);
        let zeros = QuantizedRows::quantize(&[0.0; 32], 1, 32);
        assert_eq!((zeros.scales[0], zeros.sums[0]), (0.0, 0.0));
        let mut bad = [1.0f32; 32];
        bad[3] = f32::NAN;
        assert!(QuantizedRows::quantize(&bad, 1, 32).scales[0].is_nan(), "a NaN input must not vanish");
    }

    #[test]
    fn positions_are_a_permutation_of_the_row() {
        let layouts: [(&str, fn(usize, usize, usize) -> usize); 2] = [
            ("block pairs", QuantizedRows::position_in_block_pairs),
            ("lane order", |_, b, j| QuantizedRows::position_in_lane_order(b, j)),
        ];
        for (name, position) in layouts {
            for nb in 1..6 {
                let mut seen = vec![false; nb * BLOCK];
                for b in 0..nb {
                    for j in 0..BLOCK {
                        let p = position(nb, b, j);
                        assert!(p < nb * BLOCK && !seen[p], "{name}, nb {nb}: position {p} out of the row or twice");
                        seen[p] = true;
                    }
                }
            }
        }
        // The lane order pairs value 2k of a block with 16-bit lane k of its first code bytes.
        assert_eq!((0..8).map(|k| QuantizedRows::position_in_lane_order(0, 2 * k)).collect::<Vec<_>>(), (0..8).collect::<Vec<_>>());
        assert_eq!(QuantizedRows::position_in_lane_order(1, 17), 32 + 24);
    }

    /// A block with one massive value keeps its small ones (the reason for 16 bits).
    #[test]
    fn a_massive_activation_does_not_flush_its_block() {
        let mut x = vec![0.01f32; 32];
        x[5] = 300.0;
        let back = QuantizedRows::quantize(&x, 1, 32).dequantize();
        assert!((back[0] - 0.01).abs() < 0.006, "{}", back[0]);
    }
}
