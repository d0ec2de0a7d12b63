//! Packing training examples into fixed-length rows without wasting tokens on padding, while
//! respecting document boundaries: every token carries a segment id, the model keeps attention
//! and positions inside a segment, and the loss never predicts across one. An example longer than
//! the room left continues as a new segment of the next row.
//!
//! Each token also says whether it is a *target* (predicted by the loss): every token of a
//! pretraining document, only the response of an SFT example.

use crate::error::{DataError, Result};

/// One tokenised example: ids and, per id, whether the loss predicts it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Example {
    pub ids: Vec<u32>,
    pub targets: Vec<bool>,
    /// Language code of the text (empty when unknown). Methods that treat languages differently
    /// inside one row (ShifCon's per-token shift) read it back from [`PackedRow::segment_langs`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub lang: String,
}

impl Example {
    /// A pretraining document: every token is a target.
    pub fn document(ids: Vec<u32>) -> Self {
        let targets = vec![true; ids.len()];
        Example { ids, targets, lang: String::new() }
    }

    pub fn with_lang(mut self, lang: &str) -> Self {
        self.lang = lang.to_string();
        self
    }
}

/// A row ready for training.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedRow {
    pub ids: Vec<u32>,
    pub segments: Vec<u32>,
    pub targets: Vec<bool>,
    /// The language of each segment (`segment_langs[segments[t]]` is token `t`'s).
    pub segment_langs: Vec<String>,
}

impl PackedRow {
    /// A row holding one document (benchmarks, tests).
    pub fn single(ids: Vec<u32>, lang: &str) -> Self {
        let n = ids.len();
        PackedRow { ids, segments: vec![0; n], targets: vec![true; n], segment_langs: vec![lang.to_string()] }
    }

    /// The language of token `t`.
    pub fn lang_at(&self, t: usize) -> &str {
        &self.segment_langs[self.segments[t] as usize]
    }

    /// Whether position `t` predicts position `t + 1`: both in one segment and `t + 1` a target.
    pub fn predicts_next(&self, t: usize) -> bool {
        t + 1 < self.ids.len() && self.segments[t + 1] == self.segments[t] && self.targets[t + 1]
    }

    /// Number of predicted tokens in the row.
    pub fn num_predictions(&self) -> usize {
        (0..self.ids.len()).filter(|&t| self.predicts_next(t)).count()
    }
}

/// What a packer holds between rows (checkpointed with the sampler state).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PackerState {
    /// The unplaced rest of the current example.
    pub pending: Example,
}

#[derive(Debug, Clone)]
pub struct Packer {
    pub seq_len: usize,
    pub state: PackerState,
}

impl Packer {
    pub fn new(seq_len: usize) -> Self {
        Packer { seq_len, state: PackerState::default() }
    }

    /// Takes a checkpointed state, refusing one no packer could have written: ids and targets
    /// of different lengths, or ids the vocabulary (`vocab` rows) has no embedding for.
    pub fn restore(&mut self, state: PackerState, vocab: usize) -> Result<()> {
        let pending = &state.pending;
        if pending.ids.len() != pending.targets.len() {
            return Err(DataError::Invalid(format!(
                "the checkpoint's pending example has {} ids but {} targets: the state is corrupt",
                pending.ids.len(),
                pending.targets.len()
            )));
        }
        if let Some(bad) = pending.ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(DataError::Invalid(format!(
                "the checkpoint's pending example holds token id {bad}, but the vocabulary has {vocab} entries: it was written for another tokenizer"
            )));
        }
        self.state = state;
        Ok(())
    }

    /// Fills one row, pulling examples from `next_example` as needed (empty ones are skipped).
    /// `None` from the source, or a long run of empty examples, is an error: the row cannot fill.
    pub fn next_row(&mut self, mut next_example: impl FnMut() -> Option<Example>) -> Result<PackedRow> {
        const MAX_EMPTY_IN_A_ROW: usize = 10_000;
        let mut ids = Vec::with_capacity(self.seq_len);
        let mut segments = Vec::with_capacity(self.seq_len);
        let mut targets = Vec::with_capacity(self.seq_len);
        let mut segment = 0u32;
        let mut segment_langs = Vec::new();
        let mut empty_in_a_row = 0;
        while ids.len() < self.seq_len {
            if self.state.pending.ids.is_empty() {
                self.state.pending =
                    next_example().ok_or_else(|| DataError::Invalid("the training data ran out before the row was full".into()))?;
                if self.state.pending.ids.is_empty() {
                    empty_in_a_row += 1;
                    if empty_in_a_row == MAX_EMPTY_IN_A_ROW {
                        return Err(DataError::Invalid(format!(
                            "{MAX_EMPTY_IN_A_ROW} training examples in a row tokenised to nothing; check the data"
                        )));
                    }
                    continue;
                }
                empty_in_a_row = 0;
            }
            let take = (self.seq_len - ids.len()).min(self.state.pending.ids.len());
            ids.extend(self.state.pending.ids.drain(..take));
            targets.extend(self.state.pending.targets.drain(..take));
            segments.extend(std::iter::repeat_n(segment, take));
            segment_langs.push(self.state.pending.lang.clone());
            segment += 1;
        }
        Ok(PackedRow { ids, segments, targets, segment_langs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_checkpointed_state_is_refused() {
        let mut packer = Packer::new(8);
        let mut state = PackerState { pending: Example { ids: vec![1, 2, 3], targets: vec![true, true], lang: String::new() } };
        let err = packer.restore(state.clone(), 100).unwrap_err().to_string();
        assert!(err.contains("3 ids but 2 targets"), "{err}");
        state.pending.targets.push(true);
        state.pending.ids[1] = 500;
        let err = packer.restore(state.clone(), 100).unwrap_err().to_string();
        assert!(err.contains("token id 500") && err.contains("100 entries"), "{err}");
        state.pending.ids[1] = 50;
        packer.restore(state, 100).unwrap();
        assert_eq!(packer.state.pending.ids, [1, 50, 3]);
    }

    #[test]
    fn packs_continues_and_marks_segments() {
        let mut docs = vec![vec![1, 2, 3], vec![], vec![4, 5, 6, 7, 8, 9], vec![10, 11], vec![12, 13]].into_iter();
        let mut packer = Packer::new(4);
        let mut next = || docs.next().map(Example::document);
        let first = packer.next_row(&mut next).unwrap();
        assert_eq!(first.ids, vec![1, 2, 3, 4]);
        assert_eq!(first.segments, vec![0, 0, 0, 1]);
        assert_eq!(packer.state.pending.ids, vec![5, 6, 7, 8, 9]);
        let second = packer.next_row(&mut next).unwrap();
        assert_eq!((second.ids, second.segments), (vec![5, 6, 7, 8], vec![0, 0, 0, 0]));
        let third = packer.next_row(&mut next).unwrap();
        assert_eq!(third.ids, vec![9, 10, 11, 12]);
        assert_eq!(third.segments, vec![0, 1, 1, 2]);
        assert!(!third.predicts_next(0) && third.predicts_next(1) && !third.predicts_next(2) && !third.predicts_next(3));
        assert_eq!(third.num_predictions(), 1);
        // The data runs out: an error, not a hang.
        let err = packer.next_row(&mut next).unwrap_err().to_string();
        assert!(err.contains("ran out"), "{err}");
        let err = Packer::new(4).next_row(|| Some(Example::default())).unwrap_err().to_string();
        assert!(err.contains("tokenised to nothing"), "{err}");
    }

    #[test]
    fn only_targets_are_predicted() {
        let example = Example { ids: vec![1, 2, 3, 4], targets: vec![false, false, true, true], lang: String::new() };
        let mut once = Some(example);
        let row = Packer::new(4).next_row(|| once.take()).unwrap();
        assert_eq!((0..4).filter(|&t| row.predicts_next(t)).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn segments_keep_their_language() {
        let mut docs = vec![Example::document(vec![1, 2]).with_lang("hu"), Example::document(vec![3, 4, 5]).with_lang("en")].into_iter();
        let mut packer = Packer::new(4);
        let row = packer.next_row(|| docs.next()).unwrap();
        assert_eq!(row.segment_langs, vec!["hu", "en"]);
        assert_eq!((0..4).map(|t| row.lang_at(t)).collect::<Vec<_>>(), vec!["hu", "hu", "en", "en"]);
        // The rest of the English document opens the next row, still English.
        let mut more = vec![Example::document(vec![6, 7, 8]).with_lang("sw")].into_iter();
        let next = packer.next_row(|| more.next()).unwrap();
        assert_eq!(next.segment_langs, vec!["en", "sw"]);
    }
}
