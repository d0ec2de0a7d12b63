//! Quantized weight matrices in the packed affine layout the CPU kernels read.
//!
//! A [`PackedMatrix`] holds an `[out, in]` weight (HF orientation: one row per output feature)
//! as 32-element blocks `w = scale · code + min` ([`super::blocks::AffineBlock`]):
//! 4-bit codes two to a byte (byte `j` of a block holds codes `j` and `j + 16`, as in ggml's
//! Q4_0/Q4_1), wider codes one to a byte, and one f32 scale and min per block — or, for the
//! k-quants that scale 16-element sub-blocks without a min (Q3_K, Q6_K), signed codes one to a
//! byte and two scales per block, `w = scale · code` ([`super::blocks::SignedSubBlock`]). It is
//! built from GGUF blocks once at load (as llama.cpp repacks for its CPU kernels) or by quantizing
//! f32 weights ([`PackedMatrix::quantize`]); it never holds the f32 matrix.

use super::blocks::{AffineBlock, GgmlType, SignedSubBlock};
use crate::error::{KernelError, Result};

/// Elements per block of the packed layout.
pub const BLOCK: usize = 32;

/// The GGML types [`PackedMatrix::from_ggml`] takes (every other type loads as f32).
pub const PACKED_TYPES: &str = "Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q3_K, Q4_K, Q5_K, Q6_K";

/// How the codes of a [`PackedMatrix`] are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeWidth {
    /// Codes 0..=15, two per byte.
    Four,
    /// Codes 0..=255, one per byte.
    Eight,
    /// Codes -128..=127, one per byte, a scale per 16 elements and no min (Q3_K, Q6_K).
    SignedSixteens,
}

impl CodeWidth {
    /// Bytes of codes per 32-element block.
    pub fn block_bytes(self) -> usize {
        match self {
            CodeWidth::Four => BLOCK / 2,
            CodeWidth::Eight | CodeWidth::SignedSixteens => BLOCK,
        }
    }

    /// Scales per 32-element block.
    pub fn scales_per_block(self) -> usize {
        match self {
            CodeWidth::Four | CodeWidth::Eight => 1,
            CodeWidth::SignedSixteens => 2,
        }
    }

    /// Whether blocks have a min (`w = scale · code + min`); signed codes have none.
    pub fn has_mins(self) -> bool {
        self != CodeWidth::SignedSixteens
    }
}

/// The types `--quantize` produces from f32 weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantizeTo {
    /// 8-bit codes, one scale per 32 (ggml's Q8_0).
    Q8_0,
    /// 4-bit codes, one scale per 32 (ggml's Q4_0).
    Q4_0,
    /// 4-bit codes, a scale and a min per 32 (ggml's Q4_1).
    Q4_1,
}

impl QuantizeTo {
    pub const NAMES: &'static str = "q8_0, q4_0, q4_1";

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "q8_0" => QuantizeTo::Q8_0,
            "q4_0" => QuantizeTo::Q4_0,
            "q4_1" => QuantizeTo::Q4_1,
            _ => return None,
        })
    }

    pub fn ggml_type(self) -> GgmlType {
        match self {
            QuantizeTo::Q8_0 => GgmlType::Q8_0,
            QuantizeTo::Q4_0 => GgmlType::Q4_0,
            QuantizeTo::Q4_1 => GgmlType::Q4_1,
        }
    }
}

/// An `[rows, cols]` weight matrix in the packed affine layout (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct PackedMatrix {
    /// The type the weights came from (for reports and errors).
    pub source: GgmlType,
    rows: usize,
    cols: usize,
    width: CodeWidth,
    /// `rows × cols / BLOCK × width.block_bytes()`.
    codes: Vec<u8>,
    /// `rows × cols / BLOCK` each.
    scales: Vec<f32>,
    mins: Vec<f32>,
}

impl PackedMatrix {
    /// Packs ggml blocks of type `ty` holding an `[rows, cols]` matrix, row-major (GGUF's layout
    /// of a linear weight). Errors when the type has no packed form, when `cols` is not a whole
    /// number of blocks, or when `bytes` is not exactly the matrix (data cut mid-block).
    pub fn from_ggml(ty: GgmlType, rows: usize, cols: usize, bytes: &[u8]) -> Result<Self> {
        let width = match ty.affine_bits() {
            Some(bits) if bits <= 4 => CodeWidth::Four,
            Some(_) => CodeWidth::Eight,
            None if ty.has_signed_form() => CodeWidth::SignedSixteens,
            None => {
                return Err(KernelError::Invalid(format!(
                    "{} has no packed form for the quantized kernels (they take {})",
                    ty.name(),
                    PACKED_TYPES
                )));
            }
        };
        if cols == 0 || !cols.is_multiple_of(ty.block_size()) {
            return Err(KernelError::Invalid(format!(
                "rows of {cols} elements are not a whole number of {} blocks ({} elements each)",
                ty.name(),
                ty.block_size()
            )));
        }
        let expected = rows
            .checked_mul(cols / ty.block_size())
            .and_then(|blocks| blocks.checked_mul(ty.type_size()))
            .ok_or_else(|| KernelError::Invalid(format!("a {rows}×{cols} {} matrix overflows the address space", ty.name())))?;
        if bytes.len() != expected {
            return Err(KernelError::Invalid(format!(
                "a {rows}×{cols} {} matrix takes {expected} bytes, found {} (data cut mid-block or a wrong shape)",
                ty.name(),
                bytes.len()
            )));
        }
        let mut packed = Self::empty(ty, rows, cols, width);
        for block in bytes.chunks_exact(ty.type_size()) {
            if width == CodeWidth::SignedSixteens {
                ty.signed_sub_blocks(block, &mut |sub| packed.push_signed(&sub));
            } else {
                ty.affine_blocks(block, &mut |b| packed.push(&b));
            }
        }
        Ok(packed)
    }

    /// Quantizes an `[rows, cols]` f32 matrix (row-major) the way ggml's `quantize_row_*_ref`
    /// does. Errors when `cols` is not a multiple of 32 or `values` is not the matrix.
    pub fn quantize(to: QuantizeTo, rows: usize, cols: usize, values: &[f32]) -> Result<Self> {
        if cols == 0 || !cols.is_multiple_of(BLOCK) || rows.checked_mul(cols) != Some(values.len()) {
            return Err(KernelError::Invalid(format!(
                "cannot quantize {} values as a {rows}×{cols} matrix to {:?}: rows must be a multiple of {BLOCK} elements",
                values.len(),
                to
            )));
        }
        let width = if to == QuantizeTo::Q8_0 { CodeWidth::Eight } else { CodeWidth::Four };
        let mut packed = Self::empty(to.ggml_type(), rows, cols, width);
        for chunk in values.chunks_exact(BLOCK) {
            packed.push(&quantize_block(to, chunk));
        }
        Ok(packed)
    }

    fn empty(source: GgmlType, rows: usize, cols: usize, width: CodeWidth) -> Self {
        let blocks = rows * (cols / BLOCK);
        PackedMatrix {
            source,
            rows,
            cols,
            width,
            codes: Vec::with_capacity(blocks * width.block_bytes()),
            scales: Vec::with_capacity(blocks * width.scales_per_block()),
            mins: Vec::with_capacity(if width.has_mins() { blocks } else { 0 }),
        }
    }

    fn push(&mut self, block: &AffineBlock) {
        match self.width {
            CodeWidth::Four => self.codes.extend((0..16).map(|j| (block.codes[j] & 0x0F) | (block.codes[j + 16] << 4))),
            CodeWidth::Eight => self.codes.extend_from_slice(&block.codes),
            CodeWidth::SignedSixteens => unreachable!("signed codes are pushed by push_signed"),
        }
        self.scales.push(block.scale);
        self.mins.push(block.min());
    }

    /// One 16-element sub-block of signed codes (half a 32-element block).
    fn push_signed(&mut self, sub: &SignedSubBlock) {
        self.codes.extend(sub.codes.iter().map(|&c| c as u8));
        self.scales.push(sub.scale);
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn width(&self) -> CodeWidth {
        self.width
    }

    pub fn blocks_per_row(&self) -> usize {
        self.cols / BLOCK
    }

    /// Bytes held (codes, scales and mins).
    pub fn memory_bytes(&self) -> usize {
        self.codes.len() + 4 * (self.scales.len() + self.mins.len())
    }

    /// All codes, scales and mins (no mins for signed codes), row after row.
    pub(crate) fn parts(&self) -> (&[u8], &[f32], &[f32]) {
        (&self.codes, &self.scales, &self.mins)
    }

    /// Codes, scales and mins of row `row` (`scales_per_block` scales per block; no mins for
    /// signed codes).
    pub(crate) fn row(&self, row: usize) -> (&[u8], &[f32], &[f32]) {
        let nb = self.blocks_per_row();
        let cb = nb * self.width.block_bytes();
        let ns = nb * self.width.scales_per_block();
        let nm = if self.width.has_mins() { nb } else { 0 };
        (&self.codes[row * cb..(row + 1) * cb], &self.scales[row * ns..(row + 1) * ns], &self.mins[row * nm..(row + 1) * nm])
    }

    /// Code `j` (0..32) of a block's code bytes.
    pub(crate) fn code(width: CodeWidth, block: &[u8], j: usize) -> i32 {
        match width {
            CodeWidth::Four if j < 16 => (block[j] & 0x0F) as i32,
            CodeWidth::Four => (block[j - 16] >> 4) as i32,
            CodeWidth::Eight => block[j] as i32,
            CodeWidth::SignedSixteens => block[j] as i8 as i32,
        }
    }

    /// Rows `rows` as f32, row-major.
    pub fn dequantize_rows(&self, rows: std::ops::Range<usize>) -> Vec<f32> {
        let mut out = vec![0f32; rows.len() * self.cols];
        self.dequantize_rows_into(rows, &mut out);
        out
    }

    /// Rows `rows` as f32, row-major, into `out` (`rows.len() × cols` values).
    pub fn dequantize_rows_into(&self, rows: std::ops::Range<usize>, out: &mut [f32]) {
        assert_eq!(
            out.len(),
            rows.len() * self.cols,
            "dequantize_rows_into: {} values for {} rows of {}",
            out.len(),
            rows.len(),
            self.cols
        );
        let bb = self.width.block_bytes();
        // Plain loops over fixed-size blocks: the compiler vectorises them (the f32 path of large
        // batches dequantises every weight once per forward).
        for (r, out_row) in rows.zip(out.chunks_exact_mut(self.cols)) {
            let (codes, scales, mins) = self.row(r);
            if self.width == CodeWidth::SignedSixteens {
                for ((sub, y), &scale) in codes.chunks_exact(16).zip(out_row.chunks_exact_mut(16)).zip(scales) {
                    for (v, &code) in y.iter_mut().zip(sub) {
                        *v = scale * code as i8 as f32;
                    }
                }
                continue;
            }
            for (((block, y), &scale), &min) in codes.chunks_exact(bb).zip(out_row.chunks_exact_mut(BLOCK)).zip(scales).zip(mins) {
                match self.width {
                    CodeWidth::Four => {
                        let (low, high) = y.split_at_mut(16);
                        for ((l, h), &byte) in low.iter_mut().zip(high.iter_mut()).zip(block) {
                            *l = scale * (byte & 0x0F) as f32 + min;
                            *h = scale * (byte >> 4) as f32 + min;
                        }
                    }
                    CodeWidth::Eight => {
                        for (v, &code) in y.iter_mut().zip(block) {
                            *v = scale * code as f32 + min;
                        }
                    }
                    CodeWidth::SignedSixteens => unreachable!("handled above"),
                }
            }
        }
    }

    /// The whole matrix as f32, row-major `[rows, cols]`.
    pub fn dequantize(&self) -> Vec<f32> {
        self.dequantize_rows(0..self.rows)
    }

    /// The same matrix with its rows reordered: row `i` of the result is row `order[i]` of this
    /// one (undoing llama.cpp's Q/K permutation keeps the weights quantized).
    pub fn reorder_rows(&self, order: &[usize]) -> Result<Self> {
        if order.len() != self.rows || order.iter().any(|&r| r >= self.rows) {
            return Err(KernelError::Invalid(format!("a row order of {} entries does not reorder {} rows", order.len(), self.rows)));
        }
        let mut out = Self::empty(self.source, self.rows, self.cols, self.width);
        for &r in order {
            let (codes, scales, mins) = self.row(r);
            out.codes.extend_from_slice(codes);
            out.scales.extend_from_slice(scales);
            out.mins.extend_from_slice(mins);
        }
        Ok(out)
    }
}

/// One block of f32 as ggml's reference quantizers do (`quantize_row_q8_0_ref`,
/// `quantize_row_q4_0_ref`, `quantize_row_q4_1_ref`), scales rounded through f16 as ggml stores
/// them.
fn quantize_block(to: QuantizeTo, x: &[f32]) -> AffineBlock {
    let f16_round = |v: f32| half::f16::from_f32(v).to_f32();
    let mut codes = [0u8; 32];
    match to {
        QuantizeTo::Q8_0 => {
            let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            for (c, v) in codes.iter_mut().zip(x) {
                *c = ((v * id).round() as i32 + 128) as u8;
            }
            let d = f16_round(d);
            AffineBlock { codes, scale: d, zero: 128, offset: 0.0 }
        }
        QuantizeTo::Q4_0 => {
            // The value of largest magnitude maps to -8, keeping its sign.
            let max = x.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
            let d = max / -8.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            for (c, v) in codes.iter_mut().zip(x) {
                *c = ((v * id + 8.5) as i32).min(15) as u8;
            }
            let d = f16_round(d);
            AffineBlock { codes, scale: d, zero: 8, offset: 0.0 }
        }
        QuantizeTo::Q4_1 => {
            let (min, max) = x.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            let d = (max - min) / 15.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            for (c, v) in codes.iter_mut().zip(x) {
                *c = (((v - min) * id + 0.5) as i32).min(15) as u8;
            }
            AffineBlock { codes, scale: f16_round(d), zero: 0, offset: f16_round(min) }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::quant::blocks::QK_K;

    /// Every type with a packed form.
    pub(crate) const PACKED: [GgmlType; 9] = [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q3K,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
    ];

    fn f16_bytes(x: f32) -> [u8; 2] {
        half::f16::from_f32(x).to_le_bytes()
    }

    /// A deterministic pseudo-random block of ggml bytes for `ty` with sane f16 scales.
    pub(crate) fn random_ggml_bytes(ty: GgmlType, blocks: usize, seed: u64) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut out = Vec::with_capacity(blocks * ty.type_size());
        for _ in 0..blocks {
            let mut block: Vec<u8> = (0..ty.type_size()).map(|_| next() as u8).collect();
            // Keep the f16 scales finite and small: they sit at the start of the 32-blocks and
            // at the start of the k-quant super-blocks (d, dmin).
            let scale = f16_bytes(((next() % 1000) as f32 + 1.0) * 1e-4);
            let min = f16_bytes(-((next() % 1000) as f32) * 1e-4);
            match ty {
                GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => block[..2].copy_from_slice(&scale),
                // Q3_K's and Q6_K's d is the block's last two bytes.
                GgmlType::Q3K | GgmlType::Q6K => {
                    let n = block.len();
                    block[n - 2..].copy_from_slice(&scale);
                }
                GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4K | GgmlType::Q5K => {
                    block[..2].copy_from_slice(&scale);
                    block[2..4].copy_from_slice(&min);
                }
                _ => {}
            }
            out.extend(block);
        }
        out
    }

    /// A matrix of signed codes at any width that is a whole number of 32-element blocks (GGUF's
    /// Q3_K and Q6_K come in 256-element super-blocks, so only this reaches a row's odd last block).
    pub(crate) fn random_signed(rows: usize, cols: usize, seed: u64) -> PackedMatrix {
        let bytes = random_ggml_bytes(GgmlType::Q6K, (rows * cols).div_ceil(QK_K), seed);
        let mut subs = Vec::new();
        for block in bytes.chunks_exact(GgmlType::Q6K.type_size()) {
            GgmlType::Q6K.signed_sub_blocks(block, &mut |sub| subs.push(sub));
        }
        let mut packed = PackedMatrix::empty(GgmlType::Q6K, rows, cols, CodeWidth::SignedSixteens);
        subs.iter().take(rows * cols / 16).for_each(|sub| packed.push_signed(sub));
        packed
    }

    #[test]
    fn packing_keeps_every_value_of_every_affine_type() {
        for ty in PACKED {
            let (rows, cols) = (3, 2 * ty.block_size());
            let bytes = random_ggml_bytes(ty, rows * cols / ty.block_size(), 7);
            let packed = PackedMatrix::from_ggml(ty, rows, cols, &bytes).unwrap();
            let expected = ty.dequantize(&bytes);
            let got = packed.dequantize();
            assert_eq!(got.len(), expected.len(), "{}", ty.name());
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                assert!((g - e).abs() <= 1e-6 * e.abs().max(1e-3), "{} element {i}: {g} vs {e}", ty.name());
            }
        }
    }

    #[test]
    fn bad_blocks_are_errors_naming_the_type() {
        let bytes = random_ggml_bytes(GgmlType::Q4_1, 4, 1);
        let cut = PackedMatrix::from_ggml(GgmlType::Q4_1, 2, 64, &bytes[..bytes.len() - 3]).unwrap_err().to_string();
        assert!(cut.contains("Q4_1") && cut.contains("cut mid-block"), "{cut}");
        let ragged = PackedMatrix::from_ggml(GgmlType::Q4_1, 2, 48, &bytes).unwrap_err().to_string();
        assert!(ragged.contains("not a whole number of Q4_1 blocks"), "{ragged}");
        let unsupported = PackedMatrix::from_ggml(GgmlType::Q2K, 1, 256, &[0; 84]).unwrap_err().to_string();
        assert!(unsupported.contains("Q2_K has no packed form"), "{unsupported}");
    }

    #[test]
    fn quantizing_is_close_to_the_values_and_reorders_by_row() {
        let values: Vec<f32> = (0..4 * 64).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
        for (to, tolerance) in [(QuantizeTo::Q8_0, 0.02), (QuantizeTo::Q4_0, 0.3), (QuantizeTo::Q4_1, 0.15)] {
            let packed = PackedMatrix::quantize(to, 4, 64, &values).unwrap();
            let back = packed.dequantize();
            let worst = back.iter().zip(&values).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst <= tolerance, "{to:?}: worst error {worst}");
            let reordered = packed.reorder_rows(&[2, 0, 3, 1]).unwrap();
            assert_eq!(reordered.dequantize_rows(0..1), packed.dequantize_rows(2..3));
            assert_eq!(reordered.dequantize_rows(3..4), packed.dequantize_rows(1..2));
        }
        assert!(PackedMatrix::quantize(QuantizeTo::Q8_0, 1, 48, &[0.0; 48]).is_err());
    }
}
