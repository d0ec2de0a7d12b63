//! Autoregressive generation with a KV cache: greedy or sampled (temperature, top-k, top-p,
//! repetition penalty), batched with left padding, stopping on stop tokens or a token budget.
//!
//! The loop reads the last position's logits back every step, so it is written once, async,
//! for WebGPU; native callers use [`generate_blocking`].

use rosetta_rng::SplitMix64;
use web_time::Instant;

use crate::batch::{Padding, TokenBatch};
use crate::error::{ModelError, Result};
use crate::intervention::Interventions;
use crate::model::{CausalLm, KvCache};
use crate::readback::to_vec_f32;

/// How the next token is chosen from the logits.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Sampling {
    Greedy,
    Random { temperature: f32, top_k: Option<usize>, top_p: Option<f32> },
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GenerationConfig {
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    /// HF-style repetition penalty (> 1 discourages tokens already in the sequence).
    pub repetition_penalty: Option<f32>,
    pub stop_tokens: Vec<u32>,
    pub seed: u64,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig { max_new_tokens: 64, sampling: Sampling::Greedy, repetition_penalty: None, stop_tokens: Vec::new(), seed: 0 }
    }
}

impl GenerationConfig {
    pub fn validate(&self) -> Result<()> {
        if let Sampling::Random { temperature, top_k, top_p } = &self.sampling {
            if !(*temperature > 0.0) || !temperature.is_finite() {
                return Err(ModelError::invalid(format!("temperature must be positive (got {temperature}); use greedy decoding for 0")));
            }
            if *top_k == Some(0) {
                return Err(ModelError::invalid("top-k must be at least 1"));
            }
            if let Some(p) = top_p
                && !(*p > 0.0 && *p <= 1.0)
            {
                return Err(ModelError::invalid(format!("top-p must be in (0, 1] (got {p})")));
            }
        }
        if let Some(r) = self.repetition_penalty
            && !(r > 0.0)
        {
            return Err(ModelError::invalid(format!("repetition penalty must be positive (got {r})")));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StopReason {
    StopToken,
    MaxTokens,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct GenerationOutput {
    /// Generated tokens of each prompt (without the prompt, with the stop token if one ended it).
    pub tokens: Vec<Vec<u32>>,
    pub stop_reasons: Vec<StopReason>,
    pub prompt_tokens: usize,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
}

impl GenerationOutput {
    pub fn new_tokens(&self) -> usize {
        self.tokens.iter().map(Vec::len).sum()
    }

    /// Decoding speed over all rows (tokens generated per second after the prompt).
    pub fn decode_tokens_per_second(&self) -> f64 {
        self.new_tokens() as f64 / self.decode_seconds.max(1e-9)
    }
}

/// Picks the next token from one row of logits.
pub fn sample_token(logits: &mut [f32], history: &[u32], config: &GenerationConfig, rng: &mut SplitMix64) -> u32 {
    if let Some(penalty) = config.repetition_penalty {
        for &t in history {
            if let Some(l) = logits.get_mut(t as usize) {
                *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
            }
        }
    }
    let argmax = |values: &[f32]| {
        values.iter().enumerate().fold((0usize, f32::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best }).0 as u32
    };
    let (temperature, top_k, top_p) = match &config.sampling {
        Sampling::Greedy => return argmax(logits),
        Sampling::Random { temperature, top_k, top_p } => (*temperature, *top_k, *top_p),
    };
    let mut candidates: Vec<(u32, f32)> =
        logits.iter().enumerate().filter(|(_, v)| v.is_finite()).map(|(i, &v)| (i as u32, v / temperature)).collect();
    if candidates.is_empty() {
        return argmax(logits);
    }
    candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
    if let Some(k) = top_k {
        candidates.truncate(k.max(1));
    }
    let max = candidates[0].1;
    let mut probs: Vec<f32> = candidates.iter().map(|(_, l)| (l - max).exp()).collect();
    let total: f32 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if let Some(p) = top_p {
        // Keep the smallest prefix whose mass reaches p (at least one token).
        let mut mass = 0.0;
        let mut keep = probs.len();
        for (i, q) in probs.iter().enumerate() {
            mass += q;
            if mass >= p {
                keep = i + 1;
                break;
            }
        }
        probs.truncate(keep);
        candidates.truncate(keep);
    }
    let total: f32 = probs.iter().sum();
    let mut draw = rng.next_f32() * total;
    for (i, q) in probs.iter().enumerate() {
        draw -= q;
        if draw <= 0.0 {
            return candidates[i].0;
        }
    }
    candidates[candidates.len() - 1].0
}

/// Generates continuations of `prompts` (token ids) in one batch. `on_step` sees each new token
/// as `(row, token)` for streaming output.
pub async fn generate(
    model: &CausalLm,
    prompts: &[Vec<u32>],
    config: &GenerationConfig,
    interventions: &Interventions,
    mut on_step: impl FnMut(usize, u32),
) -> Result<GenerationOutput> {
    config.validate()?;
    let pad = config.stop_tokens.first().copied().unwrap_or(0);
    let batch = TokenBatch::pad(prompts, Padding::Left, pad)?;
    let longest = batch.seq + config.max_new_tokens;
    if longest > model.config().max_position_embeddings {
        return Err(ModelError::invalid(format!(
            "prompt ({} tokens) plus max new tokens ({}) exceeds the model's context of {} tokens",
            batch.seq,
            config.max_new_tokens,
            model.config().max_position_embeddings
        )));
    }
    let rows = prompts.len();
    let vocab = model.config().vocab_size;
    let mut rng = SplitMix64::new(config.seed);
    // `longest` positions at most: the keys and values are allocated once.
    let mut cache = KvCache::with_capacity(model.num_layers(), rows, longest);
    let mut tokens: Vec<Vec<u32>> = vec![Vec::new(); rows];
    let mut finished: Vec<Option<StopReason>> = vec![None; rows];

    let start = Instant::now();
    // Left padding puts every row's last prompt token at the last position.
    let (logits, _) = model.forward_cached_last(&batch, &mut cache, interventions)?;
    let mut last = to_vec_f32(logits).await?;
    let prefill_seconds = start.elapsed().as_secs_f64();
    let decode_start = Instant::now();

    for step in 0..config.max_new_tokens {
        let mut next = Vec::with_capacity(rows);
        for row in 0..rows {
            if finished[row].is_some() {
                next.push(pad);
                continue;
            }
            let row_logits = &mut last[row * vocab..(row + 1) * vocab];
            let history: Vec<u32> = prompts[row].iter().chain(&tokens[row]).copied().collect();
            let token = sample_token(row_logits, &history, config, &mut rng);
            tokens[row].push(token);
            on_step(row, token);
            if config.stop_tokens.contains(&token) {
                finished[row] = Some(StopReason::StopToken);
            }
            next.push(token);
        }
        if finished.iter().all(Option::is_some) || step + 1 == config.max_new_tokens {
            break;
        }
        // Finished rows keep decoding a pad token: rows never attend to each other, so their
        // outputs are simply ignored.
        let step_batch = TokenBatch { ids: next, valid: vec![true; rows], batch: rows, seq: 1, segments: None };
        let (logits, _) = model.forward_cached_last(&step_batch, &mut cache, interventions)?;
        last = to_vec_f32(logits).await?;
    }
    let stop_reasons = finished.into_iter().map(|f| f.unwrap_or(StopReason::MaxTokens)).collect();
    Ok(GenerationOutput {
        tokens,
        stop_reasons,
        prompt_tokens: batch.valid_tokens(),
        prefill_seconds,
        decode_seconds: decode_start.elapsed().as_secs_f64(),
    })
}

/// [`generate`] for native callers.
#[cfg(not(target_family = "wasm"))]
pub fn generate_blocking(
    model: &CausalLm,
    prompts: &[Vec<u32>],
    config: &GenerationConfig,
    interventions: &Interventions,
    on_step: impl FnMut(usize, u32),
) -> Result<GenerationOutput> {
    crate::readback::block_on(generate(model, prompts, config, interventions, on_step))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(sampling: Sampling) -> GenerationConfig {
        GenerationConfig { sampling, ..Default::default() }
    }

    #[test]
    fn greedy_takes_the_argmax() {
        let mut rng = SplitMix64::new(0);
        let mut logits = vec![0.1, 3.0, -1.0, 2.9];
        assert_eq!(sample_token(&mut logits, &[], &config(Sampling::Greedy), &mut rng), 1);
    }

    #[test]
    fn top_k_one_is_greedy_and_top_p_keeps_the_head() {
        let mut rng = SplitMix64::new(7);
        let random = |top_k, top_p| config(Sampling::Random { temperature: 1.0, top_k, top_p });
        for _ in 0..20 {
            let mut logits = vec![0.0, 5.0, 1.0, 4.0];
            assert_eq!(sample_token(&mut logits, &[], &random(Some(1), None), &mut rng), 1);
            let mut logits = vec![0.0, 10.0, 1.0, 0.5];
            assert_eq!(sample_token(&mut logits, &[], &random(None, Some(0.9)), &mut rng), 1);
        }
    }

    #[test]
    fn repetition_penalty_demotes_seen_tokens() {
        let mut rng = SplitMix64::new(0);
        let mut cfg = config(Sampling::Greedy);
        cfg.repetition_penalty = Some(2.0);
        let mut logits = vec![0.0, 3.0, 2.0];
        assert_eq!(sample_token(&mut logits, &[1], &cfg, &mut rng), 2);
    }

    #[test]
    fn invalid_settings_are_rejected() {
        let bad = config(Sampling::Random { temperature: 0.0, top_k: None, top_p: None });
        assert!(bad.validate().is_err());
        let bad = config(Sampling::Random { temperature: 1.0, top_k: None, top_p: Some(1.5) });
        assert!(bad.validate().is_err());
    }
}
