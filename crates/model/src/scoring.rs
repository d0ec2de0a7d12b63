//! Information cost of text under the model: bits per character, per byte, per sentence.
//!
//! Per-token perplexity cannot compare languages or tokenizers (token counts differ), so
//! Rosetta's gap metric is **bits per character** of held-out text:
//! `bits = −Σ log₂ p(token_t | tokens_<t)` over the text's tokens, divided by the number of
//! Unicode characters. Each text is scored as its own document, preceded by the tokenizer's
//! document-start token ([`TextTokenizer::document_start_id`]) so its first token is predicted too.

use burn::prelude::*;

use rosetta_kernels::cross_entropy::target_log_probs;

use crate::batch::{Padding, TokenBatch};
use crate::error::{ModelError, Result};
use crate::intervention::Interventions;
use crate::model::CausalLm;
use crate::readback::to_vec_f32;
use crate::tokenizer::TextTokenizer;

/// The cost of one text.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct TextCost {
    pub bits: f64,
    pub tokens: usize,
    pub chars: usize,
    pub bytes: usize,
}

impl std::ops::Add for TextCost {
    type Output = TextCost;

    fn add(self, other: TextCost) -> TextCost {
        TextCost {
            bits: self.bits + other.bits,
            tokens: self.tokens + other.tokens,
            chars: self.chars + other.chars,
            bytes: self.bytes + other.bytes,
        }
    }
}

impl TextCost {
    pub fn bits_per_char(&self) -> f64 {
        self.bits / self.chars.max(1) as f64
    }

    pub fn bits_per_byte(&self) -> f64 {
        self.bits / self.bytes.max(1) as f64
    }

    pub fn tokens_per_char(&self) -> f64 {
        self.tokens as f64 / self.chars.max(1) as f64
    }
}

#[derive(Debug, Clone)]
pub struct ScoreOptions {
    pub batch_size: usize,
    /// Texts longer than this many tokens are an error (split them first).
    pub max_tokens: usize,
    pub interventions: Interventions,
}

impl ScoreOptions {
    pub fn for_model(model: &CausalLm) -> Self {
        ScoreOptions { batch_size: 8, max_tokens: model.config().max_position_embeddings.min(2048), interventions: Interventions::none() }
    }
}

/// Token ids of a text as scored: the document-start token, then the text.
pub fn scoring_ids(tokenizer: &TextTokenizer, text: &str) -> Result<Vec<u32>> {
    let start = tokenizer.document_start_id().ok_or_else(|| {
        ModelError::tokenizer(tokenizer.origin().clone(), "has no BOS, EOS or end-of-text token to start a document with")
    })?;
    let mut ids = vec![start];
    ids.extend(tokenizer.encode(text, false)?);
    Ok(ids)
}

/// Log-probabilities (natural log) of each next token, `[batch, seq-1]`, for a right-padded batch.
///
/// The LM head runs on [`LOGPROB_CHUNK_POSITIONS`] positions at a time, so at most that many rows of
/// logits exist at once (a batch of 8 × 128 would otherwise hold 200 MB of logits plus their
/// exponentials).
pub fn next_token_logprobs(model: &CausalLm, batch: &TokenBatch, interventions: &Interventions) -> Result<Tensor<2>> {
    if batch.seq < 2 {
        return Err(ModelError::invalid(format!("next-token log-probabilities need at least 2 positions, the batch has {}", batch.seq)));
    }
    let (hidden, _) = model.forward_hidden(batch, interventions)?;
    next_token_logprobs_of_hidden(model, batch, hidden)
}

/// [`next_token_logprobs`] from the final (normed) hidden states of `batch`, however they were
/// computed — a pass resumed from a cached residual, say ([`CausalLm::forward_layers`] then
/// [`CausalLm::final_norm`]).
///
/// # Shapes
/// `hidden: [batch, seq, d_model]` → `[batch, seq-1]`.
pub fn next_token_logprobs_of_hidden(model: &CausalLm, batch: &TokenBatch, hidden: Tensor<3>) -> Result<Tensor<2>> {
    let [b, s, d] = hidden.dims();
    if [b, s] != [batch.batch, batch.seq] || s < 2 {
        return Err(ModelError::invalid(format!(
            "hidden states of shape {:?} for a batch of {} × {} (at least 2 positions)",
            hidden.dims(),
            batch.batch,
            batch.seq
        )));
    }
    let predicting = hidden.slice([0..b, 0..s - 1, 0..d]).reshape([1, b * (s - 1), d]);
    let targets: Vec<u32> = batch.ids.chunks(s).flat_map(|row| row[1..].iter().copied()).collect();
    let positions = b * (s - 1);
    let mut parts = Vec::with_capacity(positions.div_ceil(LOGPROB_CHUNK_POSITIONS));
    for start in (0..positions).step_by(LOGPROB_CHUNK_POSITIONS) {
        let end = (start + LOGPROB_CHUNK_POSITIONS).min(positions);
        let logits = model.logits(predicting.clone().slice([0..1, start..end, 0..d]));
        let vocab = logits.dims()[2];
        parts.push(
            target_log_probs(logits.reshape([end - start, vocab]), &targets[start..end]).map_err(|e| ModelError::invalid(e.to_string()))?,
        );
    }
    Ok(Tensor::cat(parts, 0).reshape([b, s - 1]))
}

/// Positions whose logits [`next_token_logprobs`] holds at once: 128 × 49 152 × 4 bytes = 25 MB
/// (and their host copy in the fused pass), few enough rows that a packed head never takes the
/// route that dequantises slices for f32 GEMM ([`crate::nn::projection::DEQUANTIZED_ROWS`]).
pub const LOGPROB_CHUNK_POSITIONS: usize = 128;

/// Texts tokenized for scoring and grouped into right-padded batches of similar length — what
/// [`score_texts`] runs, for callers that compute the batches' hidden states their own way.
#[derive(Debug, Clone)]
pub struct ScoringPlan {
    pub batches: Vec<ScoringBatch>,
    /// Per text: `(chars, bytes)`.
    sizes: Vec<(usize, usize)>,
}

/// One batch of a [`ScoringPlan`]: its rows are the texts `texts` (indices into the plan's texts).
#[derive(Debug, Clone)]
pub struct ScoringBatch {
    pub batch: TokenBatch,
    pub texts: Vec<usize>,
    /// Tokens predicted per row (the text's tokens after the document start).
    predicted: Vec<usize>,
}

impl ScoringPlan {
    pub fn new(tokenizer: &TextTokenizer, texts: &[&str], options: &ScoreOptions) -> Result<Self> {
        if options.batch_size == 0 {
            return Err(ModelError::invalid("batch size must be at least 1"));
        }
        let encoded = texts.iter().map(|t| scoring_ids(tokenizer, t)).collect::<Result<Vec<_>>>()?;
        if let Some((i, ids)) = encoded.iter().enumerate().find(|(_, ids)| ids.len() > options.max_tokens) {
            return Err(ModelError::invalid(format!(
                "text {} has {} tokens, more than the {} this scorer takes; split long documents",
                i + 1,
                ids.len(),
                options.max_tokens
            )));
        }
        // Similar lengths together waste less padding.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| encoded[i].len());
        let mut batches = Vec::new();
        for chunk in order.chunks(options.batch_size) {
            let sequences: Vec<Vec<u32>> = chunk.iter().map(|&i| encoded[i].clone()).collect();
            let batch = TokenBatch::pad(&sequences, Padding::Right, 0)?;
            if batch.seq < 2 {
                // Only the start token: nothing to predict (all texts in the chunk are empty).
                continue;
            }
            batches.push(ScoringBatch { batch, texts: chunk.to_vec(), predicted: chunk.iter().map(|&i| encoded[i].len() - 1).collect() });
        }
        Ok(ScoringPlan { batches, sizes: texts.iter().map(|t| (t.chars().count(), t.len())).collect() })
    }

    /// A cost per text, all zero until [`Self::add_batch`] fills them in.
    pub fn empty_costs(&self) -> Vec<TextCost> {
        self.sizes.iter().map(|&(chars, bytes)| TextCost { chars, bytes, ..TextCost::default() }).collect()
    }

    /// Writes the costs of batch `index` from its next-token log-probabilities (`[batch, seq-1]`
    /// row-major, as [`next_token_logprobs`] gives them) into `costs`.
    pub fn add_batch(&self, index: usize, logprobs: &[f32], costs: &mut [TextCost]) {
        let part = &self.batches[index];
        let width = part.batch.seq - 1;
        for (row, (&i, &predicted)) in part.texts.iter().zip(&part.predicted).enumerate() {
            let nats: f64 = logprobs[row * width..row * width + predicted].iter().map(|&l| l as f64).sum();
            costs[i].bits = -nats / std::f64::consts::LN_2;
            costs[i].tokens = predicted;
        }
    }
}

/// Scores each text separately; the result is in the order of `texts`.
pub async fn score_texts(model: &CausalLm, tokenizer: &TextTokenizer, texts: &[&str], options: &ScoreOptions) -> Result<Vec<TextCost>> {
    let plan = ScoringPlan::new(tokenizer, texts, options)?;
    let mut costs = plan.empty_costs();
    for (index, part) in plan.batches.iter().enumerate() {
        let logprobs = to_vec_f32(next_token_logprobs(model, &part.batch, &options.interventions)?).await?;
        plan.add_batch(index, &logprobs, &mut costs);
    }
    Ok(costs)
}

/// [`score_texts`] for native callers.
#[cfg(not(target_family = "wasm"))]
pub fn score_texts_blocking(model: &CausalLm, tokenizer: &TextTokenizer, texts: &[&str], options: &ScoreOptions) -> Result<Vec<TextCost>> {
    crate::readback::block_on(score_texts(model, tokenizer, texts, options))
}
