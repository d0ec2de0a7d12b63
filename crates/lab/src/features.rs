//! The magnitude-feature room (Kim et al., EMNLP Findings 2024): per layer, the activation norm of
//! every hidden dimension under translation prompts and under monolingual text, the
//! large-magnitude dimensions that stand out, and Wanda pruning calibrated on translation at a
//! sparsity the visitor picks — with per-language bits per character after pruning. The numbers
//! come from `rosetta-prune` (the code behind `rosetta features` / `rosetta prune`); masks are
//! computed by the WGSL masking kernel on WebGPU and by its reference on the CPU.

use std::future::Future;

use rosetta_kernels::masking::Sparsity;
use rosetta_model::scoring::{ScoreOptions, score_texts};
use rosetta_model::{CausalLm, TextTokenizer};
use rosetta_prune::features::{LayerFeatures, outliers};
use rosetta_prune::{Calibration, PruneMethod, PruneOptions, ScoreRule, prune_model};
use rosetta_viz::Heatmap;

use crate::error::{LabError, Result};
use crate::manifest::Manifest;
use crate::page_state::MAX_SPARSITY;

const BATCH: usize = 4;

pub use rosetta_prune::features::FeatureExport;

/// A dimension is "large-magnitude" above this many times its layer's median norm.
pub const OUTLIER_FACTOR: f32 = 5.0;

fn calibration(model: &CausalLm, tokenizer: &TextTokenizer, prompts: &[String]) -> Result<Calibration> {
    Ok(Calibration::new(tokenizer, prompts, BATCH, model.config().max_position_embeddings)?)
}

/// Feature magnitudes of `model` under one calibration setting.
pub async fn magnitudes(model: &CausalLm, tokenizer: &TextTokenizer, setting: &str, prompts: &[String]) -> Result<LayerFeatures> {
    let calibration = calibration(model, tokenizer, prompts)?;
    let stats = calibration.all_stats(model)?;
    Ok(LayerFeatures::from_stats(setting, calibration.prompts, &stats, model.num_layers()).await?)
}

/// Layers × dimensions, log-scaled so the few huge dimensions do not wash out the rest.
pub fn heatmap(features: &LayerFeatures) -> String {
    Heatmap {
        title: format!("Feature magnitude per layer — {} prompts (log scale)", features.setting),
        x_label: "hidden dimension".into(),
        y_label: "layer".into(),
        values: features.norms.iter().map(|row| row.iter().map(|&v| (1.0 + v as f64).ln()).collect()).collect(),
        row_labels: (0..features.norms.len()).map(|l| l.to_string()).collect(),
    }
    .to_svg()
}

/// Per layer, the large-magnitude dimensions of `features` (largest first) — each with whether it
/// is also large in `other` (shared by both settings) or only here.
pub fn large_dimensions(features: &LayerFeatures, other: &LayerFeatures) -> Vec<Vec<(usize, f32, bool)>> {
    features
        .norms
        .iter()
        .zip(&other.norms)
        .map(|(mine, theirs)| {
            let shared: std::collections::HashSet<usize> = outliers(theirs, OUTLIER_FACTOR).into_iter().map(|(d, _)| d).collect();
            outliers(mine, OUTLIER_FACTOR).into_iter().map(|(d, v)| (d, v, shared.contains(&d))).collect()
        })
        .collect()
}

/// Sentences per language the features room scores after pruning.
pub const SCORED_SENTENCES: usize = 8;

/// The sentences the features room scores: the first [`SCORED_SENTENCES`] of each language.
pub fn scored_texts(manifest: &Manifest) -> Vec<(String, Vec<&str>)> {
    manifest.langs.iter().map(|l| (l.clone(), manifest.sentences(l).into_iter().take(SCORED_SENTENCES).collect())).collect()
}

/// Bits per character per language of `model` pruned with Wanda at `sparsity`, calibrated on
/// `translation_prompts`. The loaded model is left as it is (the pruned copy shares nothing it
/// writes). `pause` is awaited between the steps — calibration, pruning, each language — and
/// `progress` hears the fraction done after each.
pub async fn pruned_bits_per_char<F: Future<Output = ()>>(
    model: &CausalLm,
    tokenizer: &TextTokenizer,
    translation_prompts: &[String],
    sparsity: f32,
    texts: &[(String, Vec<&str>)],
    pause: impl Fn() -> F,
    mut progress: impl FnMut(f32),
) -> Result<Vec<(String, f64)>> {
    if !(0.0..=MAX_SPARSITY).contains(&sparsity) {
        return Err(LabError::Invalid(format!("sparsity must be between 0 and {MAX_SPARSITY} (got {sparsity})")));
    }
    let mut pruned = model.clone();
    // Calibration and pruning are a third of the work each way; scoring the rest.
    let scoring_from = if sparsity > 0.0 { 0.5 } else { 0.0 };
    if sparsity > 0.0 {
        let mut calibration = calibration(model, tokenizer, translation_prompts)?;
        progress(0.25);
        pause().await;
        let options =
            PruneOptions { method: PruneMethod::Wanda, sparsity: Sparsity::Unstructured(sparsity as f64), rule: ScoreRule::Plain, seed: 0 };
        prune_model(&mut pruned, Some(&mut calibration), None, &options, |_, _| {})?;
        progress(scoring_from);
    }
    let mut out = Vec::with_capacity(texts.len());
    for (i, (lang, sentences)) in texts.iter().enumerate() {
        pause().await;
        let costs = score_texts(&pruned, tokenizer, sentences, &ScoreOptions::for_model(&pruned)).await?;
        out.push((lang.clone(), costs.into_iter().reduce(|a, b| a + b).unwrap_or_default().bits_per_char()));
        progress(scoring_from + (1.0 - scoring_from) * (i + 1) as f32 / texts.len().max(1) as f32);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{tiny_manifest, tiny_model_and_tokenizer};
    use rosetta_model::readback::block_on;

    #[test]
    fn the_committed_features_export_reads_back() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../reports/features/features.json");
        let export: FeatureExport = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let translation = export.setting("translation").unwrap();
        assert_eq!(translation.norms.len(), 30);
        assert!(heatmap(translation).starts_with("<svg"));
    }

    #[test]
    fn magnitudes_and_pruning_on_the_tiny_model() {
        let (model, tokenizer) = tiny_model_and_tokenizer(3);
        let manifest = tiny_manifest();
        let translation = block_on(magnitudes(&model, &tokenizer, "translation", &manifest.translation_prompts)).unwrap();
        let monolingual = block_on(magnitudes(&model, &tokenizer, "monolingual", &manifest.monolingual_prompts)).unwrap();
        assert_eq!(translation.norms.len(), 3);
        assert_eq!(translation.norms[0].len(), model.config().hidden_size);
        assert!(translation.norms.iter().flatten().all(|v| v.is_finite() && *v >= 0.0));
        assert!(heatmap(&translation).starts_with("<svg"));
        let large = large_dimensions(&translation, &monolingual);
        assert_eq!(large.len(), 3);
        assert!(large.iter().flatten().all(|(_, v, _)| *v > 0.0));

        let texts: Vec<(String, Vec<&str>)> =
            manifest.langs.iter().map(|l| (l.clone(), manifest.sentences(l).into_iter().take(4).collect())).collect();
        let dense =
            block_on(pruned_bits_per_char(&model, &tokenizer, &manifest.translation_prompts, 0.0, &texts, || async {}, |_| {})).unwrap();
        let mut heard = Vec::new();
        let sparse =
            block_on(pruned_bits_per_char(&model, &tokenizer, &manifest.translation_prompts, 0.9, &texts, || async {}, |f| heard.push(f)))
                .unwrap();
        assert_eq!(heard.len(), 2 + texts.len(), "calibration, pruning, then each language: {heard:?}");
        assert!(heard.windows(2).all(|w| w[0] < w[1]) && heard.last() == Some(&1.0), "{heard:?}");
        assert_eq!(dense.len(), manifest.langs.len());
        assert!(dense.iter().zip(&sparse).all(|(d, s)| d.1.is_finite() && s.1.is_finite() && d.1 != s.1), "{dense:?} {sparse:?}");
        // The loaded model is untouched: scoring it again gives the dense numbers.
        let again =
            block_on(pruned_bits_per_char(&model, &tokenizer, &manifest.translation_prompts, 0.0, &texts, || async {}, |_| {})).unwrap();
        assert_eq!(dense, again);
        let err = block_on(pruned_bits_per_char(&model, &tokenizer, &manifest.translation_prompts, 1.0, &texts, || async {}, |_| {}))
            .unwrap_err();
        assert!(err.to_string().contains("between 0 and 0.95"));
    }
}
