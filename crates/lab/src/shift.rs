//! The shift room (ShifCon, Zhang et al. ACL 2025): the loaded model's language geometry per layer
//! — computed live from the manifest's parallel sentences with `rosetta-shifcon`, the code behind
//! `rosetta geometry` — and the shift toward English at `L_to` and back at `L_bk`, applied at a
//! strength the visitor chooses: where the target sentences move in the PCA plane, and what
//! happens to the next-token distribution and bits per character.

use std::collections::BTreeMap;
use std::future::Future;

use rosetta_model::burn::prelude::*;
use rosetta_model::readback::to_vec_f32;
use rosetta_model::scoring::{ScoreOptions, ScoringPlan, TextCost, next_token_logprobs_of_hidden};
use rosetta_model::{CausalLm, Interventions, TextTokenizer};
pub use rosetta_shifcon::MIN_GEOMETRY_SENTENCES;
pub use rosetta_shifcon::charts::{band_stability_chart, distance_chart, scatter_chart};
use rosetta_shifcon::geometry::SiteGeometry;
use rosetta_shifcon::states::{StateOptions, sentence_states};
use rosetta_shifcon::{Geometry, GeometryOptions, MeasureOptions, ShiftPlan, measure_geometry};

use crate::error::{LabError, Result};
use crate::manifest::Manifest;
/// Plain data the page shows: defined beside the page–worker messages.
pub use rosetta_lab_protocol::NextTokenView;

/// Sentences per language the shift room measures (the geometry's minimum: fast enough on a CPU).
pub const SHIFT_SENTENCES: usize = MIN_GEOMETRY_SENTENCES;

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

/// The residual stream of some sentences at the site where the shift enters (`L_to`), computed
/// once: nothing below that site depends on the strength, so each new strength runs only the
/// layers above it (with SmolLM2's band 10..19, 20 of 30 layers). Batched as the scorer batches.
pub struct ShiftBase {
    site: usize,
    scoring: ScoringPlan,
    residuals: Vec<Tensor<3>>,
}

impl ShiftBase {
    /// The residuals of `texts` at `plan`'s first shift site; `pause` is awaited between batches.
    pub async fn new<F: Future<Output = ()>>(
        model: &CausalLm,
        tokenizer: &TextTokenizer,
        plan: &ShiftPlan,
        texts: &[&str],
        pause: impl Fn() -> F,
    ) -> Result<Self> {
        let site = plan.added_at().0;
        let scoring = ScoringPlan::new(tokenizer, texts, &ScoreOptions::for_model(model))?;
        let mut residuals = Vec::with_capacity(scoring.batches.len());
        for part in &scoring.batches {
            residuals.push(model.forward_layers(&part.batch, None, 0..site, &Interventions::none())?.0);
            pause().await;
        }
        Ok(ShiftBase { site, scoring, residuals })
    }

    /// Whether this base serves `plan` (a re-measured geometry may move the band).
    pub fn serves(&self, plan: &ShiftPlan) -> bool {
        self.site == plan.added_at().0
    }

    /// The final hidden states of batch `index` with `interventions` (at the base's site or above).
    fn hidden(&self, model: &CausalLm, index: usize, interventions: &Interventions) -> Result<Tensor<3>> {
        let batch = &self.scoring.batches[index].batch;
        let layers = self.site..model.num_layers();
        let (residual, _) = model.forward_layers(batch, Some(self.residuals[index].clone()), layers, interventions)?;
        Ok(model.final_norm(residual))
    }

    /// The cost of every sentence under `interventions`, in the order they were given.
    pub async fn costs<F: Future<Output = ()>>(
        &self,
        model: &CausalLm,
        interventions: &Interventions,
        pause: impl Fn() -> F,
    ) -> Result<Vec<TextCost>> {
        let mut costs = self.scoring.empty_costs();
        for (index, part) in self.scoring.batches.iter().enumerate() {
            let hidden = self.hidden(model, index, interventions)?;
            let logprobs = to_vec_f32(next_token_logprobs_of_hidden(model, &part.batch, hidden)?).await?;
            self.scoring.add_batch(index, &logprobs, &mut costs);
            pause().await;
        }
        Ok(costs)
    }

    /// Bits per character of all the sentences together under `interventions`.
    pub async fn bits_per_char<F: Future<Output = ()>>(
        &self,
        model: &CausalLm,
        interventions: &Interventions,
        pause: impl Fn() -> F,
    ) -> Result<f64> {
        let costs = self.costs(model, interventions, pause).await?;
        Ok(costs.into_iter().reduce(|a, b| a + b).unwrap_or_default().bits_per_char())
    }
}

/// The next-token guesses half-way through the one sentence of `base` (a base of one sentence:
/// [`ShiftBase::new`] with one text) and the sentence's bits per character, from one pass.
pub async fn next_token_view(
    model: &CausalLm,
    tokenizer: &TextTokenizer,
    base: &ShiftBase,
    interventions: &Interventions,
    top_k: usize,
) -> Result<NextTokenView> {
    let part = match base.scoring.batches.as_slice() {
        [part] if part.batch.batch == 1 => part,
        _ => return Err(LabError::Invalid("the next-token view reads one sentence".into())),
    };
    let ids = &part.batch.ids;
    if ids.len() < 3 {
        return Err(LabError::Invalid(format!("`{}` is too short to predict a next token", tokenizer.decode(ids, true)?)));
    }
    // The guesses for token `cut` from the tokens before it: causal attention makes position
    // `cut - 1` of the whole sentence's pass the last position of a pass over the prefix.
    let cut = (ids.len() / 2).max(2);
    let hidden = base.hidden(model, 0, interventions)?;
    let [_, _, d] = hidden.dims();
    let logits = model.logits(hidden.clone().slice([0..1, cut - 1..cut, 0..d]));
    let vocab = logits.dims()[2];
    let probs = to_vec_f32(burn::tensor::activation::softmax(logits.reshape([vocab]), 0)).await?;
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let show = |id: usize| tokenizer.decode(&[id as u32], false);
    let top = order.iter().take(top_k).map(|&i| Ok((show(i)?, probs[i]))).collect::<Result<Vec<_>>>()?;
    let next = ids[cut] as usize;
    let logprobs = to_vec_f32(next_token_logprobs_of_hidden(model, &part.batch, hidden)?).await?;
    let mut cost = base.scoring.empty_costs();
    base.scoring.add_batch(0, &logprobs, &mut cost);
    Ok(NextTokenView {
        prefix: tokenizer.decode(&ids[1..cut], true)?,
        actual: (show(next)?, probs.get(next).copied().unwrap_or(0.0)),
        top,
        bits_per_char: cost[0].bits_per_char(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{tiny_manifest, tiny_model_and_tokenizer};
    use rosetta_model::readback::block_on;
    use rosetta_model::scoring::score_texts;

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

        let plain = block_on(shifted_bits_per_char(&model, &tokenizer, &plan, "hu", &texts, 0.0)).unwrap();
        assert!((plain - view_bits(&model, &tokenizer, &texts)).abs() < 1e-6);
        let shifted = block_on(shifted_bits_per_char(&model, &tokenizer, &plan, "hu", &texts, 1.0)).unwrap();
        assert!(shifted.is_finite() && shifted != plain);

        // Resumed from the residual at the shift's site, the passes give what full passes give.
        let base = block_on(ShiftBase::new(&model, &tokenizer, &plan, &texts, || async {})).unwrap();
        assert!(base.serves(&plan) && base.site > 0, "the tiny model's band starts above the embeddings");
        for (strength, full) in [(0.0, plain), (1.0, shifted)] {
            let interventions = plan.scaled_interventions("hu", strength, &model.device()).unwrap();
            let resumed = block_on(base.bits_per_char(&model, &interventions, || async {})).unwrap();
            assert!((resumed - full).abs() < 1e-5, "strength {strength}: resumed {resumed} vs full {full}");
        }

        // The next-token view: the prefix's guesses and the sentence's cost from one pass.
        let one = block_on(ShiftBase::new(&model, &tokenizer, &plan, &texts[..1], || async {})).unwrap();
        let interventions = plan.scaled_interventions("hu", 1.0, &model.device()).unwrap();
        let view = block_on(next_token_view(&model, &tokenizer, &one, &interventions, 5)).unwrap();
        assert_eq!(view.top.len(), 5);
        assert!(view.top.windows(2).all(|w| w[0].1 >= w[1].1));
        let ids = rosetta_model::scoring::scoring_ids(&tokenizer, texts[0]).unwrap();
        let cut = (ids.len() / 2).max(2);
        let (logits, _) = model.forward_with(&rosetta_model::TokenBatch::single(&ids[..cut]).unwrap(), &interventions).unwrap();
        let probs = block_on(to_vec_f32(burn::tensor::activation::softmax(logits, 2))).unwrap();
        let last = &probs[probs.len() - model.config().vocab_size..];
        let best = last.iter().copied().fold(f32::MIN, f32::max);
        assert!((view.top[0].1 - best).abs() < 1e-5, "top guess {} vs the prefix pass's {best}", view.top[0].1);
        let options = ScoreOptions { interventions, ..ScoreOptions::for_model(&model) };
        let alone = block_on(score_texts(&model, &tokenizer, &texts[..1], &options)).unwrap()[0].bits_per_char();
        assert!((view.bits_per_char - alone).abs() < 1e-5, "{} vs {alone}", view.bits_per_char);
    }

    /// Bits per character of `texts` under the shift at `strength` (0 = the model as it is), from
    /// the first layer: the reference [`ShiftBase`] resumes from the shift's site.
    async fn shifted_bits_per_char(
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
