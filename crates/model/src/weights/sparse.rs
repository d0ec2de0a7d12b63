//! Rosetta's compressed storage for pruned weights inside an ordinary safetensors file: a 2-D
//! weight `W [out, in]` is stored as its non-zero values in row-major order
//! (`<name>.sparse.values`, in the export dtype) and a keep-bitmap (`<name>.sparse.keep`, U8
//! `[out, ceil(in / 8)]`, bit `c % 8` of byte `c / 8` set when column `c` is non-zero); the file's
//! metadata key [`SPARSE_METADATA_KEY`] maps each such name to `[out, in]`. At 50% sparsity in
//! f16 that is 28% of the f32 bytes. Rosetta reads it back exactly; transformers does not know
//! it (export dense for transformers).

use std::collections::BTreeMap;

/// Safetensors metadata key: JSON object, weight name → `[out, in]`.
pub const SPARSE_METADATA_KEY: &str = "rosetta.sparse";
pub const VALUES_SUFFIX: &str = ".sparse.values";
pub const KEEP_SUFFIX: &str = ".sparse.keep";

/// Packs `[rows, cols]` booleans row by row, one bit each (little-endian within a byte).
pub fn pack_bits(keep: &[bool], rows: usize, cols: usize) -> Vec<u8> {
    let stride = cols.div_ceil(8);
    let mut out = vec![0u8; rows * stride];
    for r in 0..rows {
        for c in 0..cols {
            if keep[r * cols + c] {
                out[r * stride + c / 8] |= 1 << (c % 8);
            }
        }
    }
    out
}

pub fn unpack_bits(bytes: &[u8], rows: usize, cols: usize) -> Vec<bool> {
    let stride = cols.div_ceil(8);
    (0..rows * cols).map(|i| bytes[(i / cols) * stride + (i % cols) / 8] >> (i % cols % 8) & 1 == 1).collect()
}

/// Splits a dense `[rows, cols]` matrix into (non-zero values, packed keep-bitmap).
pub fn compress(values: &[f32], rows: usize, cols: usize) -> (Vec<f32>, Vec<u8>) {
    let keep: Vec<bool> = values.iter().map(|v| *v != 0.0).collect();
    let nonzero = values.iter().copied().filter(|v| *v != 0.0).collect();
    (nonzero, pack_bits(&keep, rows, cols))
}

/// Rebuilds the dense matrix; `None` when the bitmap and the values disagree in count.
pub fn decompress(nonzero: &[f32], keep: &[u8], rows: usize, cols: usize) -> Option<Vec<f32>> {
    // Checked: rows and cols come from the file's metadata. With the bitmap's length matching,
    // rows × cols is at most 8 bytes of mask per byte of file.
    if Some(keep.len()) != rows.checked_mul(cols.div_ceil(8)) {
        return None;
    }
    rows.checked_mul(cols)?;
    let mask = unpack_bits(keep, rows, cols);
    if mask.iter().filter(|k| **k).count() != nonzero.len() {
        return None;
    }
    let mut next = nonzero.iter();
    Some(mask.into_iter().map(|k| if k { *next.next().unwrap_or(&0.0) } else { 0.0 }).collect())
}

/// The `[out, in]` map stored under [`SPARSE_METADATA_KEY`].
pub fn parse_sparse_metadata(text: &str) -> Option<BTreeMap<String, [usize; 2]>> {
    serde_json::from_str(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compress_round_trips_odd_widths() {
        let values: Vec<f32> = (0..3 * 11).map(|i| if i % 3 == 0 { 0.0 } else { i as f32 }).collect();
        let (nonzero, keep) = compress(&values, 3, 11);
        assert_eq!(keep.len(), 3 * 2);
        assert_eq!(nonzero.len(), 22);
        assert_eq!(decompress(&nonzero, &keep, 3, 11).unwrap(), values);
        assert!(decompress(&nonzero[1..], &keep, 3, 11).is_none());
        // Metadata claiming a shape whose size overflows is refused, not multiplied.
        assert!(decompress(&nonzero, &keep, usize::MAX / 2, usize::MAX / 2).is_none());
        assert_eq!(unpack_bits(&pack_bits(&[true, false, true], 1, 3), 1, 3), vec![true, false, true]);
    }
}
