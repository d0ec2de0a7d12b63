//! Magnitude features (Kim et al. §3.1): for each layer and hidden dimension, the L2 norm of the
//! activations over a prompt's tokens, averaged over prompts (padding excluded), and how much the
//! top-x% dimensions of two calibration settings overlap.
//!
//! The activations are the inputs of each layer's attention projections — the normalised
//! residual stream the layer's weights multiply, i.e. what Wanda's scores weigh.

use std::collections::BTreeMap;

use rosetta_model::intervention::FeatureStats;
use rosetta_model::readback::to_vec_f32;
use rosetta_model::{LinearId, LinearKind};

use crate::error::{PruneError, Result};

/// `norms[layer][dim]` for one calibration setting.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LayerFeatures {
    pub setting: String,
    pub prompts: usize,
    pub tokens: usize,
    pub norms: Vec<Vec<f32>>,
}

/// The part of `rosetta features`' `features.json` the lab shows: one [`LayerFeatures`] per
/// calibration setting.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct FeatureExport {
    pub model: String,
    pub settings: Vec<LayerFeatures>,
}

impl FeatureExport {
    pub fn setting(&self, name: &str) -> Option<&LayerFeatures> {
        self.settings.iter().find(|s| s.setting == name)
    }
}
impl LayerFeatures {
    /// Reads the statistics back asynchronously (WebGPU cannot block); natively see
    /// [`LayerFeatures::from_stats_blocking`].
    pub async fn from_stats(setting: &str, prompts: usize, stats: &BTreeMap<LinearId, FeatureStats>, layers: usize) -> Result<Self> {
        let mut norms = Vec::with_capacity(layers);
        let mut tokens = 0;
        for layer in 0..layers {
            let s = stats
                .get(&LinearId::new(layer, LinearKind::QProj))
                .ok_or_else(|| PruneError::Invalid(format!("no statistics for layer {layer}")))?;
            tokens = s.tokens;
            norms.push(to_vec_f32(s.mean_sequence_norm()).await?);
        }
        Ok(LayerFeatures { setting: setting.to_string(), prompts, tokens, norms })
    }

    #[cfg(not(target_family = "wasm"))]
    pub fn from_stats_blocking(setting: &str, prompts: usize, stats: &BTreeMap<LinearId, FeatureStats>, layers: usize) -> Result<Self> {
        rosetta_model::readback::block_on(Self::from_stats(setting, prompts, stats, layers))
    }

    /// Indices of the `fraction` largest dimensions of `layer`, largest first (ties by index).
    pub fn top(&self, layer: usize, fraction: f64) -> Vec<usize> {
        top_indices(&self.norms[layer], fraction)
    }
}

pub fn top_indices(values: &[f32], fraction: f64) -> Vec<usize> {
    let k = ((values.len() as f64 * fraction).ceil() as usize).clamp(1, values.len().max(1));
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// Per layer, |top(a) ∩ top(b)| / |top(a)|.
pub fn overlap(a: &LayerFeatures, b: &LayerFeatures, fraction: f64) -> Result<Vec<f64>> {
    if a.norms.len() != b.norms.len() {
        return Err(PruneError::Invalid(format!("{} has {} layers, {} has {}", a.setting, a.norms.len(), b.setting, b.norms.len())));
    }
    Ok((0..a.norms.len())
        .map(|l| {
            let ta = a.top(l, fraction);
            let tb: std::collections::HashSet<usize> = b.top(l, fraction).into_iter().collect();
            ta.iter().filter(|i| tb.contains(i)).count() as f64 / ta.len().max(1) as f64
        })
        .collect())
}

/// "Large-magnitude" dimensions of a layer: norms above `factor` × the layer's median.
pub fn outliers(norms: &[f32], factor: f32) -> Vec<(usize, f32)> {
    let mut sorted = norms.to_vec();
    sorted.sort_by(f32::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    let mut out: Vec<(usize, f32)> = norms.iter().copied().enumerate().filter(|(_, v)| *v > factor * median).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_and_overlap() {
        assert_eq!(top_indices(&[0.1, 5.0, 3.0, 5.0], 0.5), vec![1, 3]);
        let a = LayerFeatures { setting: "a".into(), prompts: 1, tokens: 1, norms: vec![vec![1.0, 9.0, 8.0, 0.0]] };
        let b = LayerFeatures { setting: "b".into(), prompts: 1, tokens: 1, norms: vec![vec![9.0, 8.0, 0.0, 1.0]] };
        assert_eq!(overlap(&a, &b, 0.5).unwrap(), vec![0.5]);
        assert_eq!(outliers(&[1.0, 1.0, 1.0, 10.0], 3.0), vec![(3, 10.0)]);
    }
}
