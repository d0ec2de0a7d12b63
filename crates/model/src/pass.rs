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
    /// The model's dense projections' weight products ([`crate::CausalLm::with_dense_products`]).
    pub dense_products: rosetta_kernels::linear::Products,
    /// Whether the layers run checkpointed where they can ([`crate::CausalLm::with_layer_checkpointing`]).
    pub checkpoint_layers: bool,
    /// A checkpointed layer's forward outside the graph (`nn::checkpoint`): the projections take
    /// the kernels its replay differentiates, not the inference routes.
    pub differentiable: bool,
}

impl PassState<'_> {
    /// Records the input statistics of the linear layers `ids`, which all read `x`.
    ///
    /// # Shapes
    /// `x: [batch, seq, d_in]`.
    pub fn record_linear_input(&mut self, ids: &[LinearId], x: &Tensor<3>) {
        // The common case (no statistics asked for) costs a branch, not an allocation per layer.
        if self.interventions.feature_stats.is_empty() {
            return;
        }
        let wanted: Vec<LinearId> = ids.iter().filter(|id| self.interventions.feature_stats.contains(id)).copied().collect();
        if wanted.is_empty() || self.trace.failure.is_some() {
            return;
        }
        let [batch, _, _] = x.dims();
        // The feature-statistics kernel on wgpu (one pass over x), tensor ops elsewhere.
        let (per_sequence_sq, per_sequence_max) = match rosetta_kernels::sequence_feature_stats(x.clone(), self.valid.clone()) {
            Ok(stats) => stats,
            Err(e) => {
                self.trace.failure = Some(crate::error::ModelError::invalid(format!("feature statistics of {}: {e}", wanted[0])));
                return;
            }
        };
        let stats = FeatureStats {
            sum_sq: per_sequence_sq.clone().sum_dim(0).squeeze_dim(0),
            max_abs: per_sequence_max.max_dim(0).squeeze_dim(0),
            sum_sequence_norms: per_sequence_sq.sqrt().sum_dim(0).squeeze_dim(0),
            tokens: self.valid_tokens,
            sequences: batch,
        };
        for id in wanted {
            self.trace.feature_stats.insert(id, stats.clone());
        }
    }
}
