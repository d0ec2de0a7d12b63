//! Sentence representations: the residual stream at chosen sites, mean-pooled over each
//! sentence's tokens — after the document-start token and raw under Rosetta's conventions, over
//! every token and scaled to unit length under the released ones ([`Conventions`]). The language
//! vectors, the geometry and the contrastive loss all use this one definition.

use std::future::Future;

use rosetta_model::burn::prelude::*;
use rosetta_model::readback::to_vec_f32;
use rosetta_model::scoring::scoring_ids;
use rosetta_model::{CausalLm, Interventions, Padding, Pooling, TextTokenizer, TokenBatch};

use crate::conventions::Conventions;
use crate::error::{Result, ShifconError};
use crate::linalg::Matrix;

#[derive(Debug, Clone, Copy)]
pub struct StateOptions {
    pub batch_size: usize,
    /// Sentences are cut to this many tokens (a sentence mean needs no more).
    pub max_tokens: usize,
    /// Pooling and normalisation.
    pub conventions: Conventions,
}

impl Default for StateOptions {
    fn default() -> Self {
        StateOptions { batch_size: 16, max_tokens: 96, conventions: Conventions::Rosetta }
    }
}

/// Right-padded token batch of `texts`, each starting with the document-start token.
pub fn sentence_batch(tokenizer: &TextTokenizer, texts: &[&str], max_tokens: usize) -> Result<TokenBatch> {
    let sequences = texts
        .iter()
        .map(|t| {
            let mut ids = scoring_ids(tokenizer, t)?;
            ids.truncate(max_tokens.max(2));
            Ok(ids)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(TokenBatch::pad(&sequences, Padding::Right, 0)?)
}

/// The pooled `[batch, d_model]` states at `sites` (in that order) of one forward pass of
/// `batch` with `interventions` (a shift, say), pooled as `pooling` says (not normalised). Runs
/// only the layers the sites need.
pub fn pooled_states(
    model: &CausalLm,
    batch: &TokenBatch,
    sites: &[usize],
    interventions: &Interventions,
    pooling: Pooling,
) -> Result<Vec<Tensor<2>>> {
    let Some(&last) = sites.iter().max() else { return Ok(Vec::new()) };
    let n = model.num_layers();
    if last > n {
        return Err(ShifconError::Invalid(format!("site {last} is outside the model (sites 0..={n})")));
    }
    // A shift after the last site (ShifCon's shift back at L_bk) cannot change these states.
    let mut wanted = interventions.up_to_site(last);
    for &site in sites {
        wanted = wanted.capture(site, pooling);
    }
    // The range 0..last covers sites 0..=last: no layer past the last site runs.
    let (_, trace) = model.forward_layers(batch, None, 0..last, &wanted)?;
    sites
        .iter()
        .map(|site| {
            trace
                .residual
                .get(site)
                .and_then(|c| c.pooled().cloned())
                .ok_or_else(|| ShifconError::Invalid(format!("site {site} was not captured")))
        })
        .collect()
}

/// Sentence states of `texts` at every site in `sites`: one `texts.len() × d_model` matrix per
/// site. `progress` hears the number of sentences done.
pub async fn sentence_states(
    model: &CausalLm,
    tokenizer: &TextTokenizer,
    texts: &[&str],
    sites: &[usize],
    options: &StateOptions,
    interventions: &Interventions,
    progress: impl FnMut(usize),
) -> Result<Vec<Matrix>> {
    sentence_states_paced(model, tokenizer, texts, sites, options, interventions, || std::future::ready(()), progress).await
}

/// [`sentence_states`] that awaits `pause` after every batch: the browser gets the thread back
/// between forward passes (the lab passes a `setTimeout(0)` future; native callers nothing).
#[allow(clippy::too_many_arguments)]
pub async fn sentence_states_paced<F: Future<Output = ()>>(
    model: &CausalLm,
    tokenizer: &TextTokenizer,
    texts: &[&str],
    sites: &[usize],
    options: &StateOptions,
    interventions: &Interventions,
    pause: impl Fn() -> F,
    mut progress: impl FnMut(usize),
) -> Result<Vec<Matrix>> {
    if options.batch_size == 0 {
        return Err(ShifconError::Invalid("the state batch size must be at least 1".into()));
    }
    let d = model.config().hidden_size;
    let mut out: Vec<Matrix> = sites.iter().map(|_| Matrix::zeros(texts.len(), d)).collect();
    // Similar lengths together waste less padding.
    let lengths: Vec<usize> = texts.iter().map(|t| t.len()).collect();
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| lengths[i]);
    let mut done = 0;
    for chunk in order.chunks(options.batch_size) {
        let chunk_texts: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
        let batch = sentence_batch(tokenizer, &chunk_texts, options.max_tokens)?;
        let pooled = pooled_states(model, &batch, sites, interventions, options.conventions.pooling())?;
        for (s, tensor) in pooled.into_iter().enumerate() {
            let values = to_vec_f32(tensor).await?;
            for (row, &i) in chunk.iter().enumerate() {
                let state = &mut out[s].data[i * d..(i + 1) * d];
                state.iter_mut().zip(&values[row * d..(row + 1) * d]).for_each(|(o, &v)| *o = v as f64);
                if options.conventions.unit_states() {
                    unit_length(state);
                }
            }
        }
        done += chunk.len();
        progress(done);
        pause().await;
    }
    Ok(out)
}

/// Scales `state` to unit length (a zero state stays zero), as the released code does per sentence.
pub fn unit_length(state: &mut [f64]) {
    let len = crate::linalg::norm(state);
    if len > 0.0 {
        state.iter_mut().for_each(|v| *v /= len);
    }
}

/// [`sentence_states`] for native callers.
#[cfg(not(target_family = "wasm"))]
pub fn sentence_states_blocking(
    model: &CausalLm,
    tokenizer: &TextTokenizer,
    texts: &[&str],
    sites: &[usize],
    options: &StateOptions,
    interventions: &Interventions,
    progress: impl FnMut(usize),
) -> Result<Vec<Matrix>> {
    rosetta_model::readback::block_on(sentence_states(model, tokenizer, texts, sites, options, interventions, progress))
}
