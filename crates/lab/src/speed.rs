//! "Measure speed": forward tokens/s at batch 1 × 64 after one warm-up pass, and greedy decoding
//! from that prompt — one token per step through the KV cache, the memory-bound case a quantized
//! model is held for. The page's button runs it in the worker; `rosetta bench lab` runs the same
//! natively on any device (and its peer, transformers.js, repeats it in
//! `scripts/peers/transformersjs_page.html`).

use rosetta_lab_protocol::SPEED_DECODE_TOKENS;
use rosetta_model::generate::{GenerationConfig, generate};
use rosetta_model::readback::to_vec_f32;
use rosetta_model::{CausalLm, Interventions, TokenBatch};
use web_time::Instant;

use crate::error::{LabError, Result};

/// Prompt tokens of the forward measurement (and of decoding's prompt).
pub const SPEED_PROMPT_TOKENS: usize = 64;

/// Tokens per second, both measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Speed {
    pub forward: f64,
    pub decode: f64,
}

/// The same prompt everywhere (a fixed walk over the vocabulary), so that runs compare.
pub fn speed_prompt(vocab: usize) -> Vec<u32> {
    (0..SPEED_PROMPT_TOKENS as u32).map(|i| (i * 7919 + 13) % vocab.max(1) as u32).collect()
}

pub async fn measure_speed(model: &CausalLm) -> Result<Speed> {
    let vocab = model.config().vocab_size;
    let ids = speed_prompt(vocab);
    let batch = TokenBatch::single(&ids)?;
    let last = SPEED_PROMPT_TOKENS - 1;
    let run = || async {
        let (logits, _) = model.forward_with(&batch, &Interventions::none())?;
        // Read back (the last position's logits) so a lazy backend has finished the pass.
        Ok::<_, LabError>(to_vec_f32(logits.slice([0..1, last..last + 1, 0..vocab])).await?)
    };
    run().await?;
    let reps = 3;
    let started = Instant::now();
    for _ in 0..reps {
        run().await?;
    }
    let forward = (reps * SPEED_PROMPT_TOKENS) as f64 / started.elapsed().as_secs_f64().max(1e-9);
    let config = GenerationConfig { max_new_tokens: SPEED_DECODE_TOKENS, ..Default::default() };
    let output = generate(model, &[ids], &config, &Interventions::none(), |_, _| {}).await?;
    Ok(Speed { forward, decode: output.decode_tokens_per_second() })
}
