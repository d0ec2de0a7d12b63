//! Per-forward-pass state shared by the layers: rotary tables, the attention mask, and the
//! intervention hooks (see [`crate::intervention`]).

use burn::prelude::*;

use crate::intervention::{FeatureStats, Interventions, LinearId, Trace};

pub(crate) struct PassState<'a> {
    pub interventions: &'a Interventions,
    pub trace: &'a mut Trace,
    /// `[batch, seq]`, 1.0 for real tokens and 0.0 for padding; `None` when all are real.
    pub valid: Option<Tensor<2>>,
    /// Number of real tokens among this pass's new positions.
    pub valid_tokens: usize,
    pub cos: Tensor<4>,
    pub sin: Tensor<4>,
    /// `[batch, 1, seq, kv_len]`, `true` = may not attend. `None` means plain causal attention.
    pub attention_mask: Option<Tensor<4, Bool>>,
}

impl PassState<'_> {
    /// Records the input statistics of the linear layers `ids`, which all read `x`.
    ///
    /// # Shapes
    /// `x: [batch, seq, d_in]`.
    pub fn record_linear_input(&mut self, ids: &[LinearId], x: &Tensor<3>) {
        if !self.interventions.feature_stats {
            return;
        }
        let [batch, _, _] = x.dims();
        let x = match &self.valid {
            Some(valid) => x.clone() * valid.clone().unsqueeze_dim::<3>(2),
            None => x.clone(),
        };
        let per_sequence_sq: Tensor<2> = x.clone().square().sum_dim(1).squeeze_dim(1);
        let stats = FeatureStats {
            sum_sq: per_sequence_sq.clone().sum_dim(0).squeeze_dim(0),
            max_abs: x.abs().max_dim(1).max_dim(0).reshape([-1]),
            sum_sequence_norms: per_sequence_sq.sqrt().sum_dim(0).squeeze_dim(0),
            tokens: self.valid_tokens,
            sequences: batch,
        };
        for id in ids {
            self.trace.feature_stats.insert(*id, stats.clone());
        }
    }
}
