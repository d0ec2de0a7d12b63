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
use rosetta_shifcon::geometry::SiteGeometry;
use rosetta_shifcon::states::{StateOptions, sentence_states};
use rosetta_shifcon::subspace::MIN_SENTENCES;
use rosetta_shifcon::{Geometry, GeometryOptions, Matrix, ShiftPlan, analyse};
use rosetta_viz::{LineChart, ScatterChart, ScatterGroup, Series};

use crate::error::{LabError, Result};
use crate::manifest::Manifest;

/// The geometry needs twice the subspace estimator's minimum (half fit the vectors, half measure).
pub const MIN_GEOMETRY_SENTENCES: usize = 2 * MIN_SENTENCES;

/// Sentences are states in one forward pass each; this many per batch between pauses.
const CHUNK: usize = 4;
const MAX_TOKENS: usize = 64;

/// Language geometry of `model` on the first `per_lang` parallel rows of `manifest`. `pause` is
/// awaited between batches (the page yields to the browser there); `progress` hears the fraction
/// done.
pub async fn compute_geometry<F: Future<Output = ()>>(
    model: &CausalLm,
    tokenizer: &TextTokenizer,
    manifest: &Manifest,
    per_lang: usize,
    pause: impl Fn() -> F,
    mut progress: impl FnMut(f32),
) -> Result<Geometry> {
    let available = manifest.parallel.len();
    if per_lang < MIN_GEOMETRY_SENTENCES || per_lang > available {
        return Err(LabError::Invalid(format!(
            "the geometry needs between {MIN_GEOMETRY_SENTENCES} and {available} sentences per language (asked for {per_lang})"
        )));
    }
    let sites: Vec<usize> = (0..=model.num_layers()).collect();
    let options = StateOptions { batch_size: CHUNK, max_tokens: MAX_TOKENS };
    let total = (manifest.langs.len() * per_lang) as f32;
    let mut states: BTreeMap<String, Vec<Matrix>> = BTreeMap::new();
    let mut done = 0usize;
    for lang in &manifest.langs {
        let texts: Vec<&str> = manifest.sentences(lang).into_iter().take(per_lang).collect();
        let mut parts: Vec<Vec<Matrix>> = Vec::new();
        for chunk in texts.chunks(CHUNK) {
            parts.push(sentence_states(model, tokenizer, chunk, &sites, &options, &Interventions::none(), |_| {}).await?);
            done += chunk.len();
            progress(done as f32 / total);
            pause().await;
        }
        let per_site = (0..sites.len())
            .map(|s| parts.iter().map(|p| &p[s]).fold(None::<Matrix>, |acc, m| Some(acc.map_or_else(|| m.clone(), |a| a.stack(m)))));
        states.insert(lang.clone(), per_site.map(|m| m.expect("at least one chunk")).collect());
    }
    let options = GeometryOptions { english: manifest.english.clone(), pca_points: per_lang, ..GeometryOptions::default() };
    Ok(analyse(&states, &options)?)
}

/// The plan at the geometry's chosen band.
pub fn plan(geometry: &Geometry) -> Result<ShiftPlan> {
    Ok(ShiftPlan::from_site_vectors(&geometry.english, geometry.band.to, geometry.band.back, &geometry.vectors)?)
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
    let options = StateOptions { batch_size: CHUNK, max_tokens: MAX_TOKENS };
    let states = sentence_states(model, tokenizer, texts, &[site.site], &options, &interventions, |_| {}).await?;
    let m = &states[0];
    Ok((0..m.rows).map(|i| site.project_state(&m.row(i).iter().map(|&v| v as f32).collect::<Vec<_>>())).collect())
}

/// The subspace distance to English per site (raw, and after the shift) with the band shaded.
pub fn distance_chart(geometry: &Geometry) -> String {
    let mut series = Vec::new();
    for lang in geometry.langs.iter().filter(|l| **l != geometry.english) {
        let points = |shifted: bool| {
            geometry
                .sites
                .iter()
                .filter_map(|s| s.langs.get(lang).map(|l| (s.site as f64, if shifted { l.shifted.total() } else { l.raw.total() })))
                .collect()
        };
        series.push(Series { name: format!("{lang} raw"), points: points(false) });
        series.push(Series { name: format!("{lang} shifted"), points: points(true) });
    }
    LineChart {
        title: "Subspace distance to English per layer".into(),
        x_label: "layer (site)".into(),
        y_label: "distance".into(),
        series,
        band: Some((geometry.band.to as f64, geometry.band.back as f64, format!("band {}..{}", geometry.band.to, geometry.band.back))),
    }
    .to_svg()
}

/// The PCA plane at `site`: every language as measured, plus `moved` (a language's sentences
/// under the shift) when given.
pub fn scatter_chart(site: &SiteGeometry, moved: Option<(&str, f32, &[[f32; 2]])>) -> String {
    let mut groups: Vec<ScatterGroup> = site
        .pca
        .iter()
        .map(|(lang, points)| ScatterGroup { name: lang.clone(), points: points.iter().map(|p| (p[0] as f64, p[1] as f64)).collect() })
        .collect();
    if let Some((lang, strength, points)) = moved {
        groups.push(ScatterGroup {
            name: format!("{lang} shifted ×{strength:.2}"),
            points: points.iter().map(|p| (p[0] as f64, p[1] as f64)).collect(),
        });
    }
    ScatterChart { title: format!("Sentence states at layer {} (PCA)", site.site), groups }.to_svg()
}

/// The model's guess for the next token after the first half of a sentence, and the sentence's
/// cost, under some interventions.
#[derive(Debug, Clone, PartialEq)]
pub struct NextTokenView {
    pub prefix: String,
    /// The token that actually follows, and its probability.
    pub actual: (String, f32),
    /// The most probable next tokens with probabilities, most probable first.
    pub top: Vec<(String, f32)>,
    pub bits_per_char: f64,
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
    let total = costs.into_iter().reduce(|a, b| a.add(b)).unwrap_or_default();
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
        costs.into_iter().reduce(|a, b| a.add(b)).unwrap().bits_per_char()
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
        assert!(err.to_string().contains("between 16"), "{err}");
    }
}
