//! Zero-shot multiple choice: each candidate continuation is scored by its mean per-token
//! log-probability after the prompt, and the best one is the answer — the protocol of
//! lm-evaluation-harness and of Kim et al.'s XNLI / MARC evaluation.

use crate::batch::{Padding, TokenBatch};
use crate::error::{ModelError, Result};
use crate::intervention::Interventions;
use crate::model::CausalLm;
use crate::readback::to_vec_f32;
use crate::scoring::{next_token_logprobs, scoring_ids};
use crate::tokenizer::TextTokenizer;

/// Mean natural-log probability per token of each of `choices` continuing `prompt`. The prompt
/// and each continuation are tokenised separately (a continuation usually starts with a space),
/// so every choice is scored on exactly its own tokens.
pub async fn choice_logprobs(
    model: &CausalLm,
    tokenizer: &TextTokenizer,
    prompt: &str,
    choices: &[&str],
    interventions: &Interventions,
) -> Result<Vec<f64>> {
    if choices.is_empty() {
        return Err(ModelError::invalid("a multiple-choice item needs at least one choice"));
    }
    let context = scoring_ids(tokenizer, prompt)?;
    let mut sequences = Vec::with_capacity(choices.len());
    let mut lengths = Vec::with_capacity(choices.len());
    for (i, choice) in choices.iter().enumerate() {
        let continuation = tokenizer.encode(choice, false)?;
        if continuation.is_empty() {
            return Err(ModelError::invalid(format!("choice {i} ({choice:?}) tokenizes to nothing")));
        }
        lengths.push(continuation.len());
        let mut ids = context.clone();
        ids.extend(continuation);
        sequences.push(ids);
    }
    let limit = model.config().max_position_embeddings;
    if let Some(long) = sequences.iter().find(|s| s.len() > limit) {
        return Err(ModelError::invalid(format!("a prompt with its choice is {} tokens, over the model's {limit}", long.len())));
    }
    let batch = TokenBatch::pad(&sequences, Padding::Right, 0)?;
    let logprobs = to_vec_f32(next_token_logprobs(model, &batch, interventions)?).await?;
    let width = batch.seq - 1;
    Ok(sequences
        .iter()
        .zip(&lengths)
        .enumerate()
        .map(|(row, (ids, &n))| {
            // Position p predicts token p + 1: the continuation's tokens are the last n.
            let end = ids.len() - 1;
            let total: f64 = logprobs[row * width + end - n..row * width + end].iter().map(|&l| l as f64).sum();
            total / n as f64
        })
        .collect())
}

/// [`choice_logprobs`] for native callers.
#[cfg(not(target_family = "wasm"))]
pub fn choice_logprobs_blocking(model: &CausalLm, tokenizer: &TextTokenizer, prompt: &str, choices: &[&str]) -> Result<Vec<f64>> {
    crate::readback::block_on(choice_logprobs(model, tokenizer, prompt, choices, &Interventions::none()))
}
