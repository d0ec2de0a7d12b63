//! Rotary position embeddings (RoPE, Su et al. 2021) in HF's "rotate half" convention, with the
//! frequency rescalings of HF `modeling_rope_utils.py`: default, linear, llama3, and llama.cpp's
//! per-frequency divisors (`rope_freqs.weight`).
//!
//! Tables are computed on the host per forward call from the positions actually used, so the
//! cost follows the batch, not `max_position_embeddings`.

use burn::prelude::*;

use crate::config::{ModelConfig, RopeScaling};

/// The inverse frequencies of one attention head's rotary pairs.
#[derive(Debug, Clone)]
pub struct RotaryEmbedding {
    inv_freq: Vec<f32>,
    head_dim: usize,
}

impl RotaryEmbedding {
    pub fn new(config: &ModelConfig) -> Self {
        let dim = config.head_dim;
        let base = config.rope_theta;
        let default: Vec<f64> = (0..dim / 2).map(|i| 1.0 / base.powf((2 * i) as f64 / dim as f64)).collect();
        let inv_freq: Vec<f64> = match &config.rope_scaling {
            None => default,
            Some(RopeScaling::Linear { factor }) => default.iter().map(|f| f / factor).collect(),
            Some(RopeScaling::Factors { divisors }) => default.iter().zip(divisors).map(|(f, d)| f / *d as f64).collect(),
            Some(RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings }) => {
                let old_context = *original_max_position_embeddings as f64;
                let low_freq_wavelen = old_context / low_freq_factor;
                let high_freq_wavelen = old_context / high_freq_factor;
                default
                    .iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < high_freq_wavelen {
                            f
                        } else if wavelen > low_freq_wavelen {
                            f / factor
                        } else {
                            let smooth = (old_context / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        };
        RotaryEmbedding { inv_freq: inv_freq.into_iter().map(|f| f as f32).collect(), head_dim: dim }
    }

    /// The inverse frequency of each rotary pair, scaling applied.
    pub fn inv_freq(&self) -> &[f32] {
        &self.inv_freq
    }

    /// cos and sin tables for `positions` (row-major `[batch, seq]`).
    ///
    /// # Shapes
    /// returns two tensors `[batch, 1, seq, head_dim]`, broadcasting over heads.
    pub fn tables(&self, positions: &[i64], batch: usize, seq: usize, device: &Device) -> (Tensor<4>, Tensor<4>) {
        let half = self.head_dim / 2;
        let mut cos = Vec::with_capacity(positions.len() * self.head_dim);
        let mut sin = Vec::with_capacity(positions.len() * self.head_dim);
        for &p in positions {
            // HF computes `inv_freq * position` in f32 and repeats the table over both halves.
            let angles: Vec<f32> = self.inv_freq.iter().map(|f| f * p as f32).collect();
            for _ in 0..2 {
                cos.extend(angles.iter().map(|a| a.cos()));
                sin.extend(angles.iter().map(|a| a.sin()));
            }
        }
        debug_assert_eq!(cos.len(), batch * seq * 2 * half);
        let shape = [batch, 1, seq, self.head_dim];
        (Tensor::from_data(TensorData::new(cos, shape), device), Tensor::from_data(TensorData::new(sin, shape), device))
    }
}

/// Applies the rotation `x * cos + rotate_half(x) * sin` with `rotate_half([a, b]) = [-b, a]`,
/// through `rosetta_kernels::rotary` (one fused pass on the CPU backend).
///
/// # Shapes
/// `x: [batch, heads, seq, head_dim]`, `cos`/`sin: [batch, 1, seq, head_dim]`.
pub fn apply_rotary(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> crate::error::Result<Tensor<4>> {
    rosetta_kernels::rotary::rotary(x, cos.clone(), sin.clone()).map_err(|e| crate::error::ModelError::invalid(e.to_string()))
}
