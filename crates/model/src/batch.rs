//! Token batches: sequences of different lengths padded into one `[batch, seq]` block.

use burn::prelude::*;

use crate::error::{ModelError, Result};

/// Which side padding goes on. Scoring and training pad on the right; generation pads on the
/// left so every row's next token sits in the last column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    Left,
    Right,
}

/// Row-major `[batch, seq]` token ids with a validity mask.
///
/// `segments` marks packed documents: tokens of different segments in one row never attend to
/// each other and each segment's positions start at 0 (document boundaries respected, as with
/// HF's packing by `position_ids`). `None` means every row is one document.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBatch {
    pub ids: Vec<u32>,
    pub valid: Vec<bool>,
    pub batch: usize,
    pub seq: usize,
    pub segments: Option<Vec<u32>>,
}

impl TokenBatch {
    /// Pads `sequences` to the longest one with `pad_id`.
    pub fn pad(sequences: &[Vec<u32>], padding: Padding, pad_id: u32) -> Result<Self> {
        if sequences.is_empty() {
            return Err(ModelError::invalid("empty batch: no sequences to run"));
        }
        let seq = sequences.iter().map(Vec::len).max().unwrap_or(0);
        if seq == 0 {
            return Err(ModelError::invalid("every sequence in the batch is empty"));
        }
        let mut ids = Vec::with_capacity(sequences.len() * seq);
        let mut valid = Vec::with_capacity(sequences.len() * seq);
        for s in sequences {
            let pad = seq - s.len();
            if padding == Padding::Left {
                ids.extend(std::iter::repeat_n(pad_id, pad));
                valid.extend(std::iter::repeat_n(false, pad));
            }
            ids.extend_from_slice(s);
            valid.extend(std::iter::repeat_n(true, s.len()));
            if padding == Padding::Right {
                ids.extend(std::iter::repeat_n(pad_id, pad));
                valid.extend(std::iter::repeat_n(false, pad));
            }
        }
        Ok(TokenBatch { ids, valid, batch: sequences.len(), seq, segments: None })
    }

    /// Packed rows of equal length with a segment id per token (see the type's docs).
    pub fn packed(ids: Vec<u32>, segments: Vec<u32>, batch: usize, seq: usize) -> Result<Self> {
        if ids.len() != batch * seq || segments.len() != ids.len() || batch == 0 || seq == 0 {
            return Err(ModelError::invalid(format!(
                "packed batch of {} ids and {} segment ids does not fill [{batch}, {seq}]",
                ids.len(),
                segments.len()
            )));
        }
        let valid = vec![true; ids.len()];
        Ok(TokenBatch { ids, valid, batch, seq, segments: Some(segments) })
    }

    /// One unpadded sequence.
    pub fn single(ids: &[u32]) -> Result<Self> {
        Self::pad(&[ids.to_vec()], Padding::Right, 0)
    }

    pub fn all_valid(&self) -> bool {
        self.valid.iter().all(|&v| v)
    }

    pub fn valid_tokens(&self) -> usize {
        self.valid.iter().filter(|&&v| v).count()
    }

    pub fn tokens_tensor(&self, device: &Device) -> Tensor<2, Int> {
        let ids: Vec<i64> = self.ids.iter().map(|&i| i as i64).collect();
        Tensor::from_data(TensorData::new(ids, [self.batch, self.seq]), device)
    }

    /// `[batch, seq]`: 1.0 for real tokens, 0.0 for padding.
    pub fn valid_tensor(&self, device: &Device) -> Tensor<2> {
        let mask: Vec<f32> = self.valid.iter().map(|&v| v as u8 as f32).collect();
        Tensor::from_data(TensorData::new(mask, [self.batch, self.seq]), device)
    }

    /// [`Self::valid_tensor`] without each row's first valid token (rows of one token keep it,
    /// so no row is empty).
    pub fn valid_after_first_tensor(&self, device: &Device) -> Tensor<2> {
        let mut mask: Vec<f32> = self.valid.iter().map(|&v| v as u8 as f32).collect();
        for row in mask.chunks_mut(self.seq.max(1)) {
            if row.iter().filter(|&&v| v > 0.0).count() > 1
                && let Some(first) = row.iter().position(|&v| v > 0.0)
            {
                row[first] = 0.0;
            }
        }
        Tensor::from_data(TensorData::new(mask, [self.batch, self.seq]), device)
    }

    /// The slice of row `row`.
    pub fn row(&self, row: usize) -> (&[u32], &[bool]) {
        let range = row * self.seq..(row + 1) * self.seq;
        (&self.ids[range.clone()], &self.valid[range])
    }

    /// Segment ids of row `row`, if the batch is packed.
    pub fn row_segments(&self, row: usize) -> Option<&[u32]> {
        self.segments.as_ref().map(|s| &s[row * self.seq..(row + 1) * self.seq])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn left_and_right_padding() {
        let seqs = vec![vec![5, 6, 7], vec![8]];
        let right = TokenBatch::pad(&seqs, Padding::Right, 0).unwrap();
        assert_eq!(right.ids, vec![5, 6, 7, 8, 0, 0]);
        assert_eq!(right.valid, vec![true, true, true, true, false, false]);
        let left = TokenBatch::pad(&seqs, Padding::Left, 0).unwrap();
        assert_eq!(left.ids, vec![5, 6, 7, 0, 0, 8]);
        assert_eq!(left.valid_tokens(), 4);
    }

    #[test]
    fn empty_batches_are_errors() {
        assert!(TokenBatch::pad(&[], Padding::Right, 0).is_err());
        assert!(TokenBatch::pad(&[vec![]], Padding::Right, 0).is_err());
    }
}
