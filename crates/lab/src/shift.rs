//! The shift room (ShifCon, Zhang et al. ACL 2025): the loaded model's language geometry per layer
//! — computed live from the manifest's parallel sentences with `rosetta-shifcon`, the code behind
//! `rosetta geometry` — and the shift toward English at `L_to` and back at `L_bk`, applied at a
//! strength the visitor chooses: where the target sentences move in the PCA plane, and what
//! happens to the next-token distribution and bits per character.

use std::collections::BTreeMap;
use std::future::Future;

use rosetta_model::readback::to_vec_f32;
use rosetta_model::scoring::{ScoreOptions, score_texts, scoring_ids};
use rosetta_model::{CausalLm, Interventions, TextTokenizer, TokenBatch};
pub use rosetta_shifcon::MIN_GEOMETRY_SENTENCES;
pub use rosetta_shifcon::charts::{band_stability_chart, distance_chart, scatter_chart};
use rosetta_shifcon::geometry::SiteGeometry;
use rosetta_shifcon::states::{StateOptions, sentence_states};
use rosetta_shifcon::{Geometry, GeometryOptions, MeasureOptions, ShiftPlan, measure_geometry};

use crate::error::{LabError, Result};
use crate::manifest::Manifest;
/// Plain data the page shows: defined beside the page–worker messages.
pub use rosetta_lab_protocol::NextTokenView;

/// Sentences are states in one forward pass each; this many per batch between pauses.
const CHUNK: usize = 4;
const MAX_TOKENS: usize = 64;

/// Language geometry of `model` on the first `per_lang` parallel rows of `manifest`, through
/// `rosetta-shifcon`'s one measurement path. `pause` is awaited between batches (the page yields
/// to the browser there); `progress` hears the fraction done.
pub async fn compute_geometry<F: Future<Output = ()>>(
    model: &CausalLm,
    tokenizer: &TextTokenizer,
    manifest: &Manifest,
    per_lang: usize,
    pause: impl Fn() -> F,
    mut progress: impl FnMut(f32),
) -> Result<Geometry> {
    let available = manifest.parallel.len();
    if per_lang > available {
        return Err(LabError::Invalid(format!("the manifest has {available} parallel sentences per language (asked for {per_lang})")));
    }
    let texts: BTreeMap<String, Vec<&str>> =
        manifest.langs.iter().map(|lang| (lang.clone(), manifest.sentences(lang).into_iter().take(per_lang).collect())).collect();
    let options = MeasureOptions {
        states: StateOptions { batch_size: CHUNK, max_tokens: MAX_TOKENS, ..StateOptions::default() },
        geometry: GeometryOptions { english: manifest.english.clone(), pca_points: per_lang, ..GeometryOptions::default() },
    };
    Ok(measure_geometry(model, tokenizer, &texts, &options, pause, |done, total| progress(done as f32 / total.max(1) as f32)).await?)
}

/// The plan at the geometry's chosen band.
pub fn plan(geometry: &Geometry) -> Result<ShiftPlan> {
    Ok(ShiftPlan::from_site_vectors(&geometry.english, geometry.band.to, geometry.band.back, &geometry.vectors, geometry.conventions)?)
}

/// Where `texts` (in `lang`) sit in `site`'s PCA plane when the model runs with the shift at
/// `strength` — the states themselves, not a first-order guess.
pub async fn shifted_points(
    model: &CausalLm,
    tokenizer: &TextTokenizer,
    site: &SiteGeometry,
    plan: &ShiftPlan,
    lang: &str,
    texts: &[&str],
    strength: f32,
) -> Result<Vec<[f32; 2]>> {
    let interventions = plan.scaled_interventions(lang, strength, &model.device())?;
    let options = StateOptions { batch_size: CHUNK, max_tokens: MAX_TOKENS, conventions: plan.conventions };
    let states = sentence_states(model, tokenizer, texts, &[site.site], &options, &interventions, |_| {}).await?;
    let m = &states[0];
    Ok((0..m.rows).map(|i| site.project_state(&m.row(i).iter().map(|&v| v as f32).collect::<Vec<_>>())).collect())
}

pub async fn next_token_view(
    model: &CausalLm,
    tokenizer: &TextTokenizer,
    text: &str,
    interventions: &Interventions,
    top_k: usize,
) -> Result<NextTokenView> {
    let ids = scoring_ids(tokenizer, text)?;
    if ids.len() < 3 {
        return Err(LabError::Invalid(format!("`{text}` is too short to predict a next token")));
    }
    let cut = (ids.len() / 2).max(2);
    let batch = TokenBatch::single(&ids[..cut])?;
    let (logits, _) = model.forward_with(&batch, interventions)?;
    let [_, seq, vocab] = logits.dims();
    let probs = to_vec_f32(burn::tensor::activation::softmax(logits.slice([0..1, seq - 1..seq, 0..vocab]).reshape([vocab]), 0)).await?;
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let show = |id: usize| tokenizer.decode(&[id as u32], false);
    let top = order.iter().take(top_k).map(|&i| Ok((show(i)?, probs[i]))).collect::<Result<Vec<_>>>()?;
    let next = ids[cut] as usize;
    let options = ScoreOptions { interventions: interventions.clone(), ..ScoreOptions::for_model(model) };
    let cost = score_texts(model, tokenizer, &[text], &options).await?;
    Ok(NextTokenView {
        prefix: tokenizer.decode(&ids[1..cut], true)?,
        actual: (show(next)?, probs.get(next).copied().unwrap_or(0.0)),
        top,
        bits_per_char: cost[0].bits_per_char(),
    })
}

/// Bits per character of `texts` under the shift at `strength` (0 = the model as it is).
pub async fn shifted_bits_per_char(
    model: &CausalLm,
    tokenizer: &TextTokenizer,
    plan: &ShiftPlan,
    lang: &str,
    texts: &[&str],
    strength: f32,
) -> Result<f64> {
    let interventions = plan.scaled_interventions(lang, strength, &model.device())?;
    let options = ScoreOptions { interventions, ..ScoreOptions::for_model(model) };
    let costs = score_texts(model, tokenizer, texts, &options).await?;
    let total = costs.into_iter().reduce(|a, b| a + b).unwrap_or_default();
    Ok(total.bits_per_char())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{tiny_manifest, tiny_model_and_tokenizer};
    use rosetta_model::readback::block_on;

    #[test]
    fn geometry_of_the_tiny_model_places_sentences_where_the_shift_moves_them() {
        let (model, tokenizer) = tiny_model_and_tokenizer(6);
        let manifest = tiny_manifest();
        let mut seen = Vec::new();
        let geometry =
            block_on(compute_geometry(&model, &tokenizer, &manifest, MIN_GEOMETRY_SENTENCES, || async {}, |f| seen.push(f))).unwrap();
        assert_eq!(geometry.sites.len(), 7);
        assert!((seen.last().copied().unwrap() - 1.0).abs() < 1e-6, "progress ends at 1: {seen:?}");
        assert!(distance_chart(&geometry).contains("band"));

        let plan = plan(&geometry).unwrap();
        let site = &geometry.sites[geometry.band.to + 1];
        let texts: Vec<&str> = manifest.sentences("hu").into_iter().take(MIN_GEOMETRY_SENTENCES).collect();
        // Strength 0 reproduces the measured PCA coordinates (projection of the same states).
        let still = block_on(shifted_points(&model, &tokenizer, site, &plan, "hu", &texts, 0.0)).unwrap();
        for (a, b) in still.iter().zip(&site.pca["hu"]) {
            assert!((a[0] - b[0]).abs() < 1e-3 && (a[1] - b[1]).abs() < 1e-3, "{a:?} vs {b:?}");
        }
        // The full shift moves the Hungarian centroid toward the English one in the plane.
        let moved = block_on(shifted_points(&model, &tokenizer, site, &plan, "hu", &texts, 1.0)).unwrap();
        let centroid = |p: &[[f32; 2]]| p.iter().fold([0.0f32; 2], |c, x| [c[0] + x[0] / p.len() as f32, c[1] + x[1] / p.len() as f32]);
        let dist = |a: [f32; 2], b: [f32; 2]| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
        let en = centroid(&site.pca["en"]);
        assert!(dist(centroid(&moved), en) < dist(centroid(&still), en), "the shift did not move Hungarian toward English");
        assert!(scatter_chart(site, Some(("hu", 1.0, &moved))).contains("hu shifted"));

        let view = block_on(next_token_view(&model, &tokenizer, texts[0], &Interventions::none(), 5)).unwrap();
        assert_eq!(view.top.len(), 5);
        assert!(view.top.windows(2).all(|w| w[0].1 >= w[1].1));
        let plain = block_on(shifted_bits_per_char(&model, &tokenizer, &plan, "hu", &texts, 0.0)).unwrap();
        assert!((plain - view_bits(&model, &tokenizer, &texts)).abs() < 1e-6);
        let shifted = block_on(shifted_bits_per_char(&model, &tokenizer, &plan, "hu", &texts, 1.0)).unwrap();
        assert!(shifted.is_finite() && shifted != plain);
    }

    fn view_bits(model: &CausalLm, tokenizer: &TextTokenizer, texts: &[&str]) -> f64 {
        let costs = block_on(score_texts(model, tokenizer, texts, &ScoreOptions::for_model(model))).unwrap();
        costs.into_iter().reduce(|a, b| a + b).unwrap().bits_per_char()
    }

    #[test]
    fn the_committed_geometry_export_reads_back() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../reports/shifcon/geometry.json");
        let geometry: Geometry = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!((geometry.band.to, geometry.band.back), (10, 19));
        assert!(distance_chart(&geometry).contains("band 10..19"));
        assert!(scatter_chart(&geometry.sites[12], None).contains("hu"));
    }

    #[test]
    fn too_few_sentences_is_refused_with_the_range() {
        let (model, tokenizer) = tiny_model_and_tokenizer(2);
        let err = block_on(compute_geometry(&model, &tokenizer, &tiny_manifest(), 3, || async {}, |_| {})).unwrap_err();
        assert!(err.to_string().contains("3 sentences") && err.to_string().contains("16"), "{err}");
    }
}
