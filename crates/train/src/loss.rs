//! The causal language-model loss on packed rows: mean negative log-likelihood (nats) of the
//! target tokens, never across document boundaries (see `rosetta_data::packing`).

use rosetta_data::PackedRow;
use rosetta_model::burn::prelude::*;
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
/// of the whole optimizer step, so micro-batches and devices add up to the mean). The head and
/// the loss run as one op (`CausalLm::head_loss`), so the `[rows, vocab]` logits of the batch are
/// never held for backward.
pub fn packed_loss(model: &CausalLm, rows: &[PackedRow], normalizer: f32, interventions: &Interventions) -> Result<Tensor<1>> {
    let (batch, mask) = batch_and_mask(rows)?;
    let (hidden, _) = model.forward_hidden(&batch, interventions)?;
    let [b, s, d] = hidden.dims();
    // Position t predicts token t + 1: the last position of each row predicts nothing here.
    let hidden = hidden.slice([0..b, 0..s - 1, 0..d]).reshape([b * (s - 1), d]);
    let targets: Vec<u32> = rows.iter().flat_map(|r| r.ids[1..].iter().copied()).collect();
    let weights: Vec<f32> = mask.iter().map(|m| m / normalizer).collect();
    model.head_loss(hidden, &targets, &weights)
}
