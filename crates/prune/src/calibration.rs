//! A tokenised calibration set and the residual stream it produces layer by layer, so that each
//! layer's statistics are taken on the outputs of the (already pruned) layers before it —
//! Wanda's sequential procedure, without rerunning the model from the embeddings every time.

use std::collections::BTreeMap;

use rosetta_model::burn::prelude::*;
use rosetta_model::intervention::{FeatureStats, FeatureStatsMap};
use rosetta_model::{CausalLm, Interventions, LinearId, Padding, TextTokenizer, TokenBatch};

use crate::error::{PruneError, Result};

pub struct Calibration {
    batches: Vec<TokenBatch>,
    /// Residual stream at site `next_layer` for each batch (`None` before layer 0).
    hidden: Vec<Option<Tensor<3>>>,
    next_layer: usize,
    pub prompts: usize,
    pub tokens: usize,
}

impl Calibration {
    /// Tokenises `prompts` (no special tokens but BOS when the tokenizer adds one) into right-
    /// padded batches of `batch_size`. A prompt longer than `max_tokens` is an error, never
    /// silently truncated.
    pub fn new(tokenizer: &TextTokenizer, prompts: &[String], batch_size: usize, max_tokens: usize) -> Result<Self> {
        if prompts.is_empty() {
            return Err(PruneError::Invalid("the calibration set is empty: give at least one prompt".into()));
        }
        if batch_size == 0 {
            return Err(PruneError::Invalid("the calibration batch size must be at least 1".into()));
        }
        let mut sequences = Vec::with_capacity(prompts.len());
        for (index, prompt) in prompts.iter().enumerate() {
            let ids = tokenizer.encode(prompt, true)?;
            if ids.is_empty() {
                return Err(PruneError::Invalid(format!("calibration prompt {index} tokenizes to nothing")));
            }
            if ids.len() > max_tokens {
                return Err(PruneError::PromptTooLong { index, tokens: ids.len(), limit: max_tokens });
            }
            sequences.push(ids);
        }
        Self::from_ids(sequences, batch_size, tokenizer.eos_id().unwrap_or(0))
    }

    /// From token ids directly (already checked against the context).
    pub fn from_ids(sequences: Vec<Vec<u32>>, batch_size: usize, pad: u32) -> Result<Self> {
        if sequences.is_empty() || sequences.iter().any(Vec::is_empty) {
            return Err(PruneError::Invalid("the calibration set is empty or has an empty prompt".into()));
        }
        if batch_size == 0 {
            return Err(PruneError::Invalid("the calibration batch size must be at least 1".into()));
        }
        let tokens = sequences.iter().map(Vec::len).sum();
        let prompts = sequences.len();
        // Similar lengths share a batch, so little compute goes to padding; statistics are sums
        // over prompts and do not depend on the order.
        let mut sequences = sequences;
        sequences.sort_by_key(Vec::len);
        let batches = sequences
            .chunks(batch_size)
            .map(|chunk| TokenBatch::pad(chunk, Padding::Right, pad))
            .collect::<rosetta_model::Result<Vec<_>>>()?;
        let hidden = vec![None; batches.len()];
        Ok(Calibration { batches, hidden, next_layer: 0, prompts, tokens })
    }

    /// The prompts' token ids (padding removed), e.g. to give a reference implementation the
    /// same calibration tokens.
    pub fn sequences(&self) -> Vec<Vec<u32>> {
        let mut out = Vec::with_capacity(self.prompts);
        for batch in &self.batches {
            for row in 0..batch.batch {
                let (ids, valid) = batch.row(row);
                out.push(ids.iter().zip(valid).filter(|(_, v)| **v).map(|(i, _)| *i).collect());
            }
        }
        out
    }

    /// The layer whose inputs the stored residual stream feeds.
    pub fn next_layer(&self) -> usize {
        self.next_layer
    }

    /// Runs `model`'s layer `next_layer` on every batch with feature statistics on and returns
    /// them, merged over batches (padding excluded), without advancing.
    pub fn layer_stats(&self, model: &CausalLm) -> Result<BTreeMap<LinearId, FeatureStats>> {
        let layer = self.next_layer;
        let interventions = Interventions::none().with_feature_stats(CausalLm::layer_linear_ids(layer));
        let mut merged = FeatureStatsMap::default();
        for (batch, hidden) in self.batches.iter().zip(&self.hidden) {
            let (_, trace) = model.forward_layers(batch, hidden.clone(), layer..layer + 1, &interventions)?;
            merged.absorb(trace.feature_stats);
        }
        Ok(merged.0)
    }

    /// Moves the stored residual stream through layer `next_layer` of `model` (as it is now —
    /// pruned, for Wanda). `dense_in_bf16`: the layer's dense projections may take the bf16
    /// route as packed ones do (see [`Interventions::dense_in_bf16`]) — for a model loaded
    /// quantized, whose statistics passes already run there.
    pub fn advance(&mut self, model: &CausalLm, dense_in_bf16: bool) -> Result<()> {
        let layer = self.next_layer;
        if layer >= model.num_layers() {
            return Err(PruneError::Invalid(format!("calibration is already past the last layer ({layer})")));
        }
        for (batch, hidden) in self.batches.iter().zip(self.hidden.iter_mut()) {
            let interventions = Interventions::none().with_dense_in_bf16(dense_in_bf16);
            let (out, _) = model.forward_layers(batch, hidden.take(), layer..layer + 1, &interventions)?;
            *hidden = Some(out);
        }
        self.next_layer += 1;
        Ok(())
    }

    /// Statistics of every linear layer from one plain forward pass of `model` (no pruning in
    /// between): the magnitude-feature analysis.
    pub fn all_stats(&self, model: &CausalLm) -> Result<BTreeMap<LinearId, FeatureStats>> {
        let interventions = Interventions::none().with_feature_stats(model.linear_ids());
        let mut merged = FeatureStatsMap::default();
        for batch in &self.batches {
            let (_, trace) = model.forward_hidden(batch, &interventions)?;
            merged.absorb(trace.feature_stats);
        }
        Ok(merged.0)
    }
}
