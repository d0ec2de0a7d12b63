//! Pruning every linear layer of the decoder: Wanda (|W|·‖X‖, Sun et al. 2023) with the
//! calibration Kim et al. choose (translation prompts), the mt/code refinement, and the
//! magnitude and random baselines. Layers are pruned in order; each layer's activation norms
//! come from the already-pruned layers before it, as in the reference code.
//!
//! Scores and masks go through `rosetta-kernels` (WGSL on wgpu, references elsewhere).

use std::collections::BTreeMap;

use rosetta_kernels::masking::{Sparsity, apply_mask, prune_mask, wanda_scores};
use rosetta_model::burn::prelude::*;
use rosetta_model::intervention::FeatureStats;
use rosetta_model::{CausalLm, LinearId, LinearKind};
use rosetta_rng::SplitMix64;

use crate::calibration::Calibration;
use crate::error::{PruneError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PruneMethod {
    /// |W_ij| · ‖X_j‖ from calibration activations.
    Wanda,
    /// |W_ij| alone.
    Magnitude,
    /// Uniform random scores (exactly the same count pruned per row as the others).
    Random,
}

impl std::str::FromStr for PruneMethod {
    type Err = PruneError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "wanda" => Ok(PruneMethod::Wanda),
            "magnitude" => Ok(PruneMethod::Magnitude),
            "random" => Ok(PruneMethod::Random),
            other => Err(PruneError::Invalid(format!("unknown pruning method `{other}` (use wanda, magnitude or random)"))),
        }
    }
}

/// What the activation part of a Wanda score is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScoreRule {
    /// ‖X_j‖² = mean over prompts of Σ_tokens x_j² (Wanda's `scaler_row`).
    Plain,
    /// s_mt ⊙ (s_mt / s_code): features large on translation but not on code (Kim et al. §3.3).
    MtCode,
}

/// Wanda's `scaler_row`: Σ over prompts of ‖x_j‖² divided by the number of prompts.
pub fn scaler_row(stats: &FeatureStats) -> Tensor<1> {
    stats.sum_sq.clone().div_scalar(stats.sequences.max(1) as f32)
}

#[derive(Debug, Clone)]
pub struct PruneOptions {
    pub method: PruneMethod,
    pub sparsity: Sparsity,
    pub rule: ScoreRule,
    pub seed: u64,
}

/// Per linear layer: how many weights were zeroed of how many.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PruneSummary {
    pub layers: BTreeMap<String, (usize, usize)>,
    /// Wanda only: the activation norms sqrt(scaler) each layer was scored with. Left on the
    /// device: reading back inside the layer loop would block, which WebGPU cannot do.
    #[serde(skip)]
    pub activation_norms: BTreeMap<LinearId, Tensor<1>>,
}

impl PruneSummary {
    pub fn sparsity(&self) -> f64 {
        let (zero, total) = self.layers.values().fold((0, 0), |(z, t), (a, b)| (z + a, t + b));
        zero as f64 / total.max(1) as f64
    }
}

/// Prunes `model` in place and returns the keep-masks (HF `[out, in]`) with a summary.
/// `calibration` is required for Wanda; `code` only with [`ScoreRule::MtCode`]. `progress` is
/// called after each layer with (layer, layers).
pub fn prune_model(
    model: &mut CausalLm,
    mut calibration: Option<&mut Calibration>,
    mut code: Option<&mut Calibration>,
    options: &PruneOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<(BTreeMap<LinearId, Tensor<2, Bool>>, PruneSummary)> {
    if let Sparsity::Unstructured(s) = options.sparsity
        && !(0.0..1.0).contains(&s)
    {
        return Err(PruneError::Invalid(format!("sparsity must be in [0, 1), got {s}")));
    }
    match (options.method, options.rule, calibration.is_some(), code.is_some()) {
        (PruneMethod::Wanda, _, false, _) => return Err(PruneError::Invalid("Wanda needs calibration prompts".into())),
        (PruneMethod::Wanda, ScoreRule::MtCode, _, false) => {
            return Err(PruneError::Invalid("the mt-code score needs code calibration prompts as well".into()));
        }
        _ => {}
    }
    let layers = model.num_layers();
    // A model loaded quantized (`--precision auto`) takes its statistics passes on the packed
    // kernels, bf16 ones for calibration batches; the passes over its pruned — now dense —
    // layers then may too. `--precision f32` keeps every pass in f32.
    let dense_in_bf16 = model.packed_projections().0 > 0;
    let mut rng = SplitMix64::new(options.seed);
    let mut masks = BTreeMap::new();
    let mut summary = PruneSummary::default();
    for layer in 0..layers {
        let stats = match (options.method, calibration.as_deref()) {
            (PruneMethod::Wanda, Some(c)) => Some(c.layer_stats(model)?),
            _ => None,
        };
        let code_stats = match (options.rule, code.as_deref()) {
            (ScoreRule::MtCode, Some(c)) if options.method == PruneMethod::Wanda => Some(c.layer_stats(model)?),
            _ => None,
        };
        for kind in LinearKind::ALL {
            let id = LinearId::new(layer, kind);
            let weight = model.weight(id)?;
            let [rows, cols] = weight.dims();
            let scores = match options.method {
                PruneMethod::Wanda => {
                    let get = |s: &BTreeMap<LinearId, FeatureStats>| {
                        s.get(&id).map(scaler_row).ok_or_else(|| PruneError::Invalid(format!("no activation statistics for {id}")))
                    };
                    let mt = get(stats.as_ref().ok_or_else(|| PruneError::Invalid("Wanda needs calibration statistics".into()))?)?;
                    let scaler = match &code_stats {
                        Some(code) => {
                            let code = get(code)?.clamp_min(1e-12);
                            mt.clone() * (mt / code)
                        }
                        None => mt,
                    };
                    let norms = scaler.sqrt();
                    summary.activation_norms.insert(id, norms.clone());
                    wanda_scores(weight.clone(), norms)?
                }
                PruneMethod::Magnitude => weight.clone().abs(),
                PruneMethod::Random => {
                    let values: Vec<f32> = (0..rows * cols).map(|_| rng.next_f32()).collect();
                    Tensor::<1>::from_floats(values.as_slice(), &weight.device()).reshape([rows, cols])
                }
            };
            let keep = prune_mask(scores, options.sparsity)?;
            // The WGSL mask kernel on wgpu; out of place, since the model still holds `weight`.
            model.set_weight(id, apply_mask(weight, keep.clone())?)?;
            // The masks are exact-k per row, so the count needs no readback (WebGPU cannot block).
            summary.layers.insert(id.to_string(), (rows * options.sparsity.pruned_per_row(cols), rows * cols));
            masks.insert(id, keep);
        }
        // The next layer sees this layer's pruned outputs.
        if let Some(c) = calibration.as_deref_mut()
            && options.method == PruneMethod::Wanda
        {
            c.advance(model, dense_in_bf16)?;
        }
        if let Some(c) = code.as_deref_mut()
            && options.rule == ScoreRule::MtCode
            && options.method == PruneMethod::Wanda
        {
            c.advance(model, dense_in_bf16)?;
        }
        progress(layer + 1, layers);
    }
    Ok((masks, summary))
}
