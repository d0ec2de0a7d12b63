//! GGML block formats: dequantisation to f32, and the affine form the packed kernels use.
//!
//! Layouts follow ggml's `ggml-quants.c` (`dequantize_row_*`); the Python `gguf` package's
//! `gguf.quants.dequantize` is the reference the parity tests compare against.
//! Every function takes exactly `n_blocks * type_size` bytes and returns `n_blocks * block_size`
//! values; the caller has checked the sizes.
//!
//! The affine form ([`GgmlType::affine_blocks`]): every 32 consecutive weights of the types
//! that have one scale (and min) per 32 elements are `w = scale · code + min` with an unsigned
//! integer code — Q4_0 is `d·q − 8d`, Q8_0 `d·(q+128) − 128d`, a Q4_K sub-block
//! `(d·sc)·q − dmin·m`. [`super::packed`] stores weights in that form so one integer kernel
//! serves them all.
//!
//! The signed form ([`GgmlType::signed_sub_blocks`]): the k-quants that scale 16-element
//! sub-blocks and have no min are `w = scale · code` with a signed code — a Q6_K sub-block
//! `(d·sc)·(q − 32)`, a Q3_K one `(d·(sc − 32))·(q − 4)`. The packed layout keeps those too.

use half::{bf16, f16};

/// The GGML tensor types Rosetta knows by id. Ids are ggml's `enum ggml_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    BF16,
}

/// Encodes f32 values (a whole number of 32-value blocks) as GGML blocks of `ty`, as ggml's
/// reference quantizers do (`quantize_row_q8_0_ref`: per 32 values an f16 scale `max|v| / 127`
/// and 32 codes rounded half away from zero). F32, F16 and BF16 are plain casts. `None` for
/// the types Rosetta reads but does not write.
pub fn encode(ty: GgmlType, values: &[f32]) -> Option<Vec<u8>> {
    Some(match ty {
        GgmlType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => values.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect(),
        GgmlType::BF16 => values.iter().flat_map(|v| bf16::from_f32(*v).to_le_bytes()).collect(),
        GgmlType::Q8_0 => {
            debug_assert!(values.len().is_multiple_of(32));
            let mut out = Vec::with_capacity(values.len() / 32 * 34);
            for block in values.chunks_exact(32) {
                let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let inverse = if d > 0.0 { 1.0 / d } else { 0.0 };
                out.extend(f16::from_f32(d).to_le_bytes());
                out.extend(block.iter().map(|v| (v * inverse).round() as i8 as u8));
            }
            out
        }
        _ => return None,
    })
}

/// Elements per super-block of the k-quants.
pub(crate) const QK_K: usize = 256;

/// ggml's `enum ggml_type` id of each type Rosetta knows: one table, read both ways.
const IDS: [(u32, GgmlType); 13] = [
    (0, GgmlType::F32),
    (1, GgmlType::F16),
    (2, GgmlType::Q4_0),
    (3, GgmlType::Q4_1),
    (6, GgmlType::Q5_0),
    (7, GgmlType::Q5_1),
    (8, GgmlType::Q8_0),
    (10, GgmlType::Q2K),
    (11, GgmlType::Q3K),
    (12, GgmlType::Q4K),
    (13, GgmlType::Q5K),
    (14, GgmlType::Q6K),
    (30, GgmlType::BF16),
];

impl GgmlType {
    pub fn from_id(id: u32) -> Option<Self> {
        IDS.iter().find(|(i, _)| *i == id).map(|(_, ty)| *ty)
    }

    /// ggml's id of this type (what a GGUF tensor table records).
    pub fn id(self) -> u32 {
        IDS.iter().find(|(_, ty)| *ty == self).map_or(0, |(i, _)| *i)
    }

    /// ggml's name for a type id, also for ids Rosetta cannot dequantise (for error messages).
    pub fn name_of_id(id: u32) -> String {
        const NAMES: [&str; 40] = [
            "F32",
            "F16",
            "Q4_0",
            "Q4_1",
            "Q4_2",
            "Q4_3",
            "Q5_0",
            "Q5_1",
            "Q8_0",
            "Q8_1",
            "Q2_K",
            "Q3_K",
            "Q4_K",
            "Q5_K",
            "Q6_K",
            "Q8_K",
            "IQ2_XXS",
            "IQ2_XS",
            "IQ3_XXS",
            "IQ1_S",
            "IQ4_NL",
            "IQ3_S",
            "IQ2_S",
            "IQ4_XS",
            "I8",
            "I16",
            "I32",
            "I64",
            "F64",
            "IQ1_M",
            "BF16",
            "Q4_0_4_4",
            "Q4_0_4_8",
            "Q4_0_8_8",
            "TQ1_0",
            "TQ2_0",
            "IQ4_NL_4_4",
            "IQ4_NL_4_8",
            "IQ4_NL_8_8",
            "MXFP4",
        ];
        NAMES.get(id as usize).map(|s| s.to_string()).unwrap_or_else(|| format!("type id {id}"))
    }

    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q5_1 => "Q5_1",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q2K => "Q2_K",
            GgmlType::Q3K => "Q3_K",
            GgmlType::Q4K => "Q4_K",
            GgmlType::Q5K => "Q5_K",
            GgmlType::Q6K => "Q6_K",
            GgmlType::BF16 => "BF16",
        }
    }

    pub const SUPPORTED: &'static str = "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K";

    /// Elements per block.
    pub fn block_size(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 => 32,
            GgmlType::Q2K | GgmlType::Q3K | GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K => QK_K,
        }
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 2 + 16,
            GgmlType::Q4_1 => 2 + 2 + 16,
            GgmlType::Q5_0 => 2 + 4 + 16,
            GgmlType::Q5_1 => 2 + 2 + 4 + 16,
            GgmlType::Q8_0 => 2 + 32,
            GgmlType::Q2K => QK_K / 16 + QK_K / 4 + 2 + 2,
            GgmlType::Q3K => QK_K / 8 + QK_K / 4 + 12 + 2,
            GgmlType::Q4K => 2 + 2 + 12 + QK_K / 2,
            GgmlType::Q5K => 2 + 2 + 12 + QK_K / 8 + QK_K / 2,
            GgmlType::Q6K => QK_K / 2 + QK_K / 4 + QK_K / 16 + 2,
        }
    }

    /// Dequantises `bytes` (a whole number of blocks) to f32.
    pub fn dequantize(self, bytes: &[u8]) -> Vec<f32> {
        debug_assert_eq!(bytes.len() % self.type_size(), 0);
        let n_blocks = bytes.len() / self.type_size();
        let mut out = vec![0f32; n_blocks * self.block_size()];
        let blocks = bytes.chunks_exact(self.type_size());
        let outs = out.chunks_exact_mut(self.block_size());
        match self {
            GgmlType::F32 => blocks.zip(outs).for_each(|(b, y)| {
                y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }),
            GgmlType::F16 => blocks.zip(outs).for_each(|(b, y)| y[0] = read_f16(b)),
            GgmlType::BF16 => blocks.zip(outs).for_each(|(b, y)| {
                y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }),
            GgmlType::Q2K => blocks.zip(outs).for_each(|(b, y)| q2_k(b, y)),
            // One decoder of these layouts too: the signed form, with ggml's formula.
            GgmlType::Q3K | GgmlType::Q6K => blocks.zip(outs).for_each(|(b, y)| {
                let mut values = y.chunks_exact_mut(16);
                self.signed_sub_blocks(b, &mut |sub| {
                    if let Some(v) = values.next() {
                        v.iter_mut().zip(sub.codes).for_each(|(v, code)| *v = sub.scale * code as f32);
                    }
                });
            }),
            // One decoder of these layouts: the affine form the kernels pack, with ggml's formula.
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 | GgmlType::Q4K | GgmlType::Q5K => {
                blocks.zip(outs).for_each(|(b, y)| {
                    let mut values = y.chunks_exact_mut(32);
                    self.affine_blocks(b, &mut |block| {
                        if let Some(v) = values.next() {
                            v.iter_mut().enumerate().for_each(|(j, v)| *v = block.value(j));
                        }
                    });
                })
            }
        }
        out
    }
}

/// 32 weights as `scale · (code − zero) + offset` — ggml's own formula for each type (`zero` 8
/// for Q4_0, 16 for Q5_0, 128 for Q8_0, else 0), so dequantising through it is exact — which the
/// kernels use as `scale · code + min` ([`AffineBlock::min`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AffineBlock {
    pub codes: [u8; 32],
    pub scale: f32,
    pub zero: u8,
    pub offset: f32,
}

impl AffineBlock {
    /// The constant term of `scale · code + min`.
    pub fn min(&self) -> f32 {
        self.offset - self.zero as f32 * self.scale
    }

    /// Value `j` as ggml computes it.
    pub fn value(&self, j: usize) -> f32 {
        self.scale * (self.codes[j] as i32 - self.zero as i32) as f32 + self.offset
    }
}

/// 16 weights as `scale · code` with a signed code: ggml's own formula for the k-quants that
/// scale 16-element sub-blocks without a min (Q3_K, Q6_K), so dequantising through it is exact.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SignedSubBlock {
    pub codes: [i8; 16],
    pub scale: f32,
}

impl GgmlType {
    /// Bits of the codes of the affine form, or `None` when the type has no single scale per 32
    /// elements (Q2_K, Q3_K and Q6_K scale 16-element sub-blocks; float types have no codes).
    pub fn affine_bits(self) -> Option<u32> {
        match self {
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q4K => Some(4),
            GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q5K => Some(5),
            GgmlType::Q8_0 => Some(8),
            _ => None,
        }
    }

    /// Hands the 32-element affine blocks of one ggml block (`type_size` bytes) to `emit`, in
    /// element order. Does nothing for types without an affine form ([`Self::affine_bits`]).
    pub fn affine_blocks(self, b: &[u8], emit: &mut impl FnMut(AffineBlock)) {
        let mut codes = [0u8; 32];
        match self {
            GgmlType::Q4_0 | GgmlType::Q4_1 => {
                let d = read_f16(b);
                let (zero, offset, qs) = if self == GgmlType::Q4_0 { (8, 0.0, &b[2..18]) } else { (0, read_f16(&b[2..]), &b[4..20]) };
                for j in 0..16 {
                    codes[j] = qs[j] & 0x0F;
                    codes[j + 16] = qs[j] >> 4;
                }
                emit(AffineBlock { codes, scale: d, zero, offset });
            }
            GgmlType::Q5_0 | GgmlType::Q5_1 => {
                let d = read_f16(b);
                let (zero, offset, rest) = if self == GgmlType::Q5_0 { (16, 0.0, &b[2..]) } else { (0, read_f16(&b[2..]), &b[4..]) };
                let qh = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
                let qs = &rest[4..20];
                for j in 0..16 {
                    let (h0, h1) = q5_high_bits(qh, j);
                    codes[j] = (qs[j] & 0x0F) | h0;
                    codes[j + 16] = (qs[j] >> 4) | h1;
                }
                emit(AffineBlock { codes, scale: d, zero, offset });
            }
            GgmlType::Q8_0 => {
                let d = read_f16(b);
                for j in 0..32 {
                    codes[j] = (b[2 + j] as i8 as i16 + 128) as u8;
                }
                emit(AffineBlock { codes, scale: d, zero: 128, offset: 0.0 });
            }
            GgmlType::Q4K | GgmlType::Q5K => {
                let d = read_f16(b);
                let dmin = read_f16(&b[2..]);
                let scales = &b[4..16];
                let (qh, qs) = if self == GgmlType::Q5K { (Some(&b[16..48]), &b[48..176]) } else { (None, &b[16..144]) };
                for sub in 0..8 {
                    let (sc, m) = scale_min_k4(sub, scales);
                    let (chunk, high) = (sub / 2, sub % 2 == 1);
                    let q = &qs[chunk * 32..chunk * 32 + 32];
                    for l in 0..32 {
                        let nibble = if high { q[l] >> 4 } else { q[l] & 0x0F };
                        let fifth = qh.map_or(0, |qh| if qh[l] & (1u8 << sub) != 0 { 16 } else { 0 });
                        codes[l] = nibble + fifth;
                    }
                    emit(AffineBlock { codes, scale: d * sc as f32, zero: 0, offset: -(dmin * m as f32) });
                }
            }
            _ => {}
        }
    }
}

impl GgmlType {
    /// Whether [`super::packed::PackedMatrix::from_ggml`] takes the type: an affine or a signed
    /// form.
    pub fn has_packed_form(self) -> bool {
        self.affine_bits().is_some() || self.has_signed_form()
    }

    /// Whether the type has the signed form ([`Self::signed_sub_blocks`]).
    pub fn has_signed_form(self) -> bool {
        matches!(self, GgmlType::Q3K | GgmlType::Q6K)
    }

    /// Hands the 16-element signed sub-blocks of one ggml block (`type_size` bytes) to `emit`, in
    /// element order. Does nothing for types without a signed form ([`Self::has_signed_form`]).
    pub fn signed_sub_blocks(self, b: &[u8], emit: &mut impl FnMut(SignedSubBlock)) {
        match self {
            GgmlType::Q3K => q3_k_sub_blocks(b, emit),
            GgmlType::Q6K => q6_k_sub_blocks(b, emit),
            _ => {}
        }
    }
}

fn read_f16(b: &[u8]) -> f32 {
    f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// The fifth bits of Q5_0/Q5_1: bit j of `qh` belongs to element j.
fn q5_high_bits(qh: u32, j: usize) -> (u8, u8) {
    let low = (((qh >> j) << 4) & 0x10) as u8;
    let high = ((qh >> (j + 12)) & 0x10) as u8;
    (low, high)
}

fn q2_k(b: &[u8], y: &mut [f32]) {
    let scales = &b[0..16];
    let qs = &b[16..80];
    let d = read_f16(&b[80..]);
    let dmin = read_f16(&b[82..]);
    let mut is = 0;
    let mut out = 0;
    for half in 0..2 {
        let q = &qs[half * 32..half * 32 + 32];
        for shift in [0u32, 2, 4, 6] {
            for part in 0..2 {
                let sc = scales[is];
                is += 1;
                let dl = d * (sc & 0x0F) as f32;
                let ml = dmin * (sc >> 4) as f32;
                for l in 0..16 {
                    y[out] = dl * ((q[part * 16 + l] >> shift) & 3) as f32 - ml;
                    out += 1;
                }
            }
        }
    }
}

fn q3_k_sub_blocks(b: &[u8], emit: &mut impl FnMut(SignedSubBlock)) {
    let hmask = &b[0..32];
    let qs = &b[32..96];
    let raw_scales = &b[96..108];
    let d_all = read_f16(&b[108..]);

    // Twelve bytes hold sixteen 6-bit scales: low 4 bits in the first 8 bytes, high 2 bits in
    // the last 4 (ggml's kmask1/kmask2 unpacking).
    let mut aux = [0u32; 4];
    for (i, word) in aux.iter_mut().take(3).enumerate() {
        *word = u32::from_le_bytes([raw_scales[4 * i], raw_scales[4 * i + 1], raw_scales[4 * i + 2], raw_scales[4 * i + 3]]);
    }
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4);
    aux[3] = ((aux[1] >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4);
    aux[0] = (aux[0] & KMASK2) | ((tmp & KMASK1) << 4);
    aux[1] = (aux[1] & KMASK2) | (((tmp >> 2) & KMASK1) << 4);
    let mut scales = [0i8; 16];
    for (i, word) in aux.iter().enumerate() {
        for (k, byte) in word.to_le_bytes().iter().enumerate() {
            scales[4 * i + k] = *byte as i8;
        }
    }

    let mut m: u8 = 1;
    let mut is = 0;
    for half in 0..2 {
        let q = &qs[half * 32..half * 32 + 32];
        for shift in [0u32, 2, 4, 6] {
            for part in 0..2 {
                let scale = d_all * (scales[is] as i32 - 32) as f32;
                is += 1;
                let mut codes = [0i8; 16];
                for (l, code) in codes.iter_mut().enumerate() {
                    let idx = part * 16 + l;
                    let low = ((q[idx] >> shift) & 3) as i8;
                    let high = if hmask[idx] & m != 0 { 0 } else { 4 };
                    *code = low - high;
                }
                emit(SignedSubBlock { codes, scale });
            }
            m <<= 1;
        }
    }
}

/// Scale and min number `j` (of 8) of a Q4_K/Q5_K super-block, 6 bits each.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 { (q[j] & 63, q[j + 4] & 63) } else { ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4)) }
}

fn q6_k_sub_blocks(b: &[u8], emit: &mut impl FnMut(SignedSubBlock)) {
    let ql = &b[0..128];
    let qh = &b[128..192];
    let sc = &b[192..208];
    let d = read_f16(&b[208..]);
    for half in 0..2 {
        let ql = &ql[half * 64..half * 64 + 64];
        let qh = &qh[half * 32..half * 32 + 32];
        let sc = &sc[half * 8..half * 8 + 8];
        // Byte l of the half's low and high bits holds elements l, l + 32, l + 64 and l + 96.
        let mut codes = [0i8; 128];
        for l in 0..32 {
            codes[l] = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i8 - 32;
            codes[l + 32] = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            codes[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            codes[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
        for (sub, chunk) in codes.chunks_exact(16).enumerate() {
            let mut codes = [0i8; 16];
            codes.copy_from_slice(chunk);
            emit(SignedSubBlock { codes, scale: d * (sc[sub] as i8) as f32 });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16_bytes(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn q8_0_is_scale_times_int8() {
        let mut block = f16_bytes(0.5).to_vec();
        block.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let y = GgmlType::Q8_0.dequantize(&block);
        assert_eq!(y[0], -8.0);
        assert_eq!(y[31], 7.5);
    }

    #[test]
    fn q4_1_uses_low_nibbles_first() {
        let mut block = f16_bytes(2.0).to_vec();
        block.extend(f16_bytes(-1.0));
        block.extend([0x31u8; 16]);
        let y = GgmlType::Q4_1.dequantize(&block);
        assert_eq!(y[0], 1.0 * 2.0 - 1.0);
        assert_eq!(y[16], 3.0 * 2.0 - 1.0);
    }

    #[test]
    fn sizes_match_ggml() {
        let expected = [
            (GgmlType::Q2K, 84),
            (GgmlType::Q3K, 110),
            (GgmlType::Q4K, 144),
            (GgmlType::Q5K, 176),
            (GgmlType::Q6K, 210),
            (GgmlType::Q5_1, 24),
        ];
        for (ty, size) in expected {
            assert_eq!(ty.type_size(), size, "{}", ty.name());
        }
    }
}
