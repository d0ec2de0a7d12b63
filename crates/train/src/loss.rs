//! The causal language-model loss on packed rows: mean negative log-likelihood (nats) of the
//! target tokens, never across document boundaries (see `rosetta_data::packing`).

use rosetta_data::PackedRow;
use rosetta_model::burn::prelude::*;
use rosetta_model::scoring::target_logprobs;
use rosetta_model::{CausalLm, Interventions, Result, TokenBatch};

/// The rows as a packed batch, and the `[rows, seq-1]` mask of positions that predict a target.
pub fn batch_and_mask(rows: &[PackedRow]) -> Result<(TokenBatch, Vec<f32>)> {
    let seq = rows[0].ids.len();
    let ids = rows.iter().flat_map(|r| r.ids.iter().copied()).collect();
    let segments = rows.iter().flat_map(|r| r.segments.iter().copied()).collect();
    let batch = TokenBatch::packed(ids, segments, rows.len(), seq)?;
    let mask = rows.iter().flat_map(|r| (0..seq - 1).map(move |t| if r.predicts_next(t) { 1.0 } else { 0.0 })).collect();
    Ok((batch, mask))
}

/// Σ over predicted tokens of −log p, divided by `normalizer` (the number of predicted tokens
/// of the whole optimizer step, so micro-batches and devices add up to the mean).
pub fn packed_loss(model: &CausalLm, rows: &[PackedRow], normalizer: f32, interventions: &Interventions) -> Result<Tensor<1>> {
    let device = model.device();
    let (batch, mask) = batch_and_mask(rows)?;
    let (logits, _) = model.forward_with(&batch, interventions)?;
    let [b, s, v] = logits.dims();
    let targets = batch.tokens_tensor(&device).slice([0..b, 1..s]).unsqueeze_dim::<3>(2);
    let logprobs = target_logprobs(logits.slice([0..b, 0..s - 1, 0..v]), targets);
    let mask = Tensor::<2>::from_data(TensorData::new(mask, [b, s - 1]), &device);
    Ok((logprobs * mask).sum().neg().div_scalar(normalizer))
}
