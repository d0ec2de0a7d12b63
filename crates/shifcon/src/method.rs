//! ShifCon training as a [`rosetta_train::Method`]: per micro-batch,
//!
//! ```text
//! loss = w_gen · L_generation(shifted forward) + w_con · mean over band sites of InfoNCE(en, target)
//! ```
//!
//! The generation loss runs on the trainer's packed rows with every token shifted by its own
//! document's language vectors (English untouched). The contrastive loss takes `pairs_per_batch`
//! parallel (English, target) sentences of one target language (languages take turns), runs the
//! English side plain and the target side shifted or not ([`ShifconConfig::shifted_contrastive_pass`]),
//! mean-pools both at every site of the band [L_to, L_bk), L2-normalises, and applies
//! `rosetta-kernels`' symmetric InfoNCE with the in-loss re-centring (t − mean(t) + mean(en)) when
//! `recentre` is on: the fused WGSL kernel on wgpu, the reference elsewhere.
//!
//! Language vectors, by [`Conventions`]:
//! - **Rosetta**: estimated on `vector_sentences` parallel sentences with the model as it is
//!   before training (and, if asked, again every `update_vectors_every` steps); when no band is
//!   given, the same states choose it ([`crate::geometry`], with its resampled uncertainty).
//! - **Released**: accumulated online, as the released code does — every contrastive batch adds
//!   its mean unit sentence state (unshifted forward, detached) at sites F and B to running sums,
//!   English at every batch and a target language at its own; the vector is sum / count, updated
//!   before that micro-batch's generation loss uses it. (The released training code adds the
//!   *sums* to the states, so its shift grows with the step count; its evaluation divides by the
//!   count; these conventions use the mean in both.) The area is `band` or the released one scaled.
//!
//! The band, vectors and per-site distances go into the exported model's `rosetta.json`, so
//! `rosetta score`/`generate` shift automatically.

use std::collections::BTreeMap;

use rosetta_data::{BadLines, PackedRow, ParallelCorpus};
use rosetta_kernels::contrastive::{ContrastiveOptions, contrastive_loss};
use rosetta_model::burn::prelude::*;
use rosetta_model::{CausalLm, Interventions, TextTokenizer};
use rosetta_rng::SplitMix64;
use rosetta_train::loss::packed_loss;
use rosetta_train::{Method, MethodLoss, MicroBatch, TrainError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::ShifconConfig;
use crate::conventions::{Conventions, released_area};
use crate::error::ShifconError;
use crate::geometry::{Band, Geometry, GeometryOptions};
use crate::measure::{MIN_GEOMETRY_SENTENCES, MeasureOptions, measure_geometry_blocking};
use crate::shift::{ShiftPlan, SiteVectors, check_placed_band};
use crate::states::{StateOptions, pooled_states, sentence_batch, unit_length};

/// A ShifCon error reaches the trainer whole (message and causes), as a method's error.
impl From<ShifconError> for TrainError {
    fn from(e: ShifconError) -> Self {
        TrainError::Method(Box::new(e))
    }
}

fn no_plan() -> TrainError {
    ShifconError::Invalid("ShifCon has no language vectors yet (start was not called)".into()).into()
}

/// Tokens per contrastive sentence (a sentence mean needs no more).
const PAIR_MAX_TOKENS: usize = 64;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ShifconState {
    /// Next pair index per target language (into its shuffled pair list).
    cursors: BTreeMap<String, usize>,
    plan: Option<ShiftPlan>,
    /// Per-site band criterion of the band choice (for the record).
    distances: Vec<f64>,
    /// The band choice with its resampled uncertainty (for the record).
    #[serde(default)]
    band: Option<Band>,
    /// The measurement sites `[F, B]` of the released conventions' online vectors.
    #[serde(default)]
    area: Option<[usize; 2]>,
    /// Running sums of the released conventions' vectors, per language.
    #[serde(default)]
    online: BTreeMap<String, OnlineVector>,
}

/// A language vector accumulated batch by batch: sums of batch-mean states at F and B. The sums
/// are checkpointed as their bit patterns: a resumed run continues from exactly these numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct OnlineVector {
    #[serde(with = "f64_bits")]
    at_to: Vec<f64>,
    #[serde(with = "f64_bits")]
    at_back: Vec<f64>,
    batches: usize,
}

/// `Vec<f64>` as `Vec<u64>` bit patterns (JSON number parsing is not guaranteed to round-trip).
mod f64_bits {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(values: &[f64], serializer: S) -> Result<S::Ok, S::Error> {
        values.iter().map(|v| v.to_bits()).collect::<Vec<u64>>().serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<u64>::deserialize(deserializer)?.into_iter().map(f64::from_bits).collect())
    }
}

impl OnlineVector {
    fn add(&mut self, at_to: &[f64], at_back: &[f64]) {
        let add = |sum: &mut Vec<f64>, x: &[f64]| {
            sum.resize(x.len(), 0.0);
            sum.iter_mut().zip(x).for_each(|(s, v)| *s += v);
        };
        add(&mut self.at_to, at_to);
        add(&mut self.at_back, at_back);
        self.batches += 1;
    }

    fn mean(&self) -> SiteVectors {
        let mean = |sum: &[f64]| sum.iter().map(|s| (s / self.batches as f64) as f32).collect();
        SiteVectors { at_to: mean(&self.at_to), at_back: mean(&self.at_back) }
    }
}

pub struct ShifconMethod {
    section: ShifconConfig,
    /// (English, target) pairs per target language, in a seeded order.
    pairs: BTreeMap<String, Vec<(String, String)>>,
    /// Parallel sentences for the language vectors: `texts[lang]`, aligned across languages.
    vector_texts: BTreeMap<String, Vec<String>>,
    state: ShifconState,
}

impl ShifconMethod {
    /// The method a training config's `[shifcon]` table describes (`base_dir`: the config's
    /// directory, for relative paths).
    pub fn from_table(table: &toml::Table, base_dir: &std::path::Path, seed: u64) -> Result<Self, ShifconError> {
        Self::new(&ShifconConfig::from_table(table, base_dir)?, seed)
    }

    /// Reads the parallel file and checks every language has enough sentences.
    pub fn new(section: &ShifconConfig, seed: u64) -> Result<Self, ShifconError> {
        section.validate()?;
        let (corpus, _) = ParallelCorpus::read(&section.parallel, BadLines::Fail)?;
        let mut all = vec![section.english.clone()];
        all.extend(section.langs.iter().cloned());
        let aligned = corpus.aligned(&all)?;
        let need = section.vector_sentences.max(MIN_GEOMETRY_SENTENCES);
        if aligned.len() < need {
            return Err(ShifconError::TooFewSentences {
                what: format!("{} (records with all of {})", section.parallel.display(), all.join(", ")),
                lang: all.join("+"),
                count: aligned.len(),
                dims: 0,
                needed: need,
            });
        }
        let mut vector_texts: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (_, texts) in aligned.iter().take(section.vector_sentences) {
            for (lang, text) in all.iter().zip(texts) {
                vector_texts.entry(lang.clone()).or_default().push(text.to_string());
            }
        }
        let mut pairs = BTreeMap::new();
        for (i, lang) in section.langs.iter().enumerate() {
            let en_lang = [section.english.clone(), lang.clone()];
            let mut list: Vec<(String, String)> =
                corpus.aligned(&en_lang)?.into_iter().map(|(_, t)| (t[0].to_string(), t[1].to_string())).collect();
            if list.len() < section.pairs_per_batch {
                return Err(ShifconError::TooFewSentences {
                    what: format!("{}: contrastive pairs", section.parallel.display()),
                    lang: lang.clone(),
                    count: list.len(),
                    dims: 0,
                    needed: section.pairs_per_batch,
                });
            }
            SplitMix64::new(seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)).shuffle(&mut list);
            pairs.insert(lang.clone(), list);
        }
        Ok(ShifconMethod { section: section.clone(), pairs, vector_texts, state: ShifconState::default() })
    }

    /// The current plan (after [`Method::start`] or a restore).
    pub fn plan(&self) -> Option<&ShiftPlan> {
        self.state.plan.as_ref()
    }

    fn plan_or_error(&self) -> Result<&ShiftPlan, TrainError> {
        self.state.plan.as_ref().ok_or_else(no_plan)
    }

    /// Estimates the vectors (and, without a configured band, the band) on `model`; under the
    /// released conventions only fixes the area (the vectors come online).
    fn estimate(&mut self, model: &CausalLm, tokenizer: &TextTokenizer) -> Result<(), ShifconError> {
        let conventions = self.section.conventions;
        if conventions.online_vectors() {
            let layers = model.num_layers();
            let area = self.section.band.unwrap_or_else(|| released_area(layers));
            check_placed_band(area[0], area[1], layers, conventions)?;
            self.state.area = Some(area);
            return Ok(());
        }
        let band = match (self.section.band, &self.state.plan) {
            (Some([to, back]), _) => Some([to, back]),
            (None, Some(plan)) => Some([plan.to, plan.back]),
            (None, None) => None,
        };
        let inference = model.valid();
        let texts: BTreeMap<String, Vec<&str>> =
            self.vector_texts.iter().map(|(l, t)| (l.clone(), t.iter().map(String::as_str).collect())).collect();
        let plan = match band {
            Some(area) => ShiftPlan::estimate_blocking(&inference, tokenizer, &texts, &self.section.english, area, conventions)?,
            None => {
                let options = MeasureOptions {
                    geometry: GeometryOptions {
                        english: self.section.english.clone(),
                        beta: self.section.beta,
                        earliest_start: self.section.earliest_start,
                        bootstrap: self.section.bootstrap,
                        ..Default::default()
                    },
                    states: StateOptions { conventions, ..Default::default() },
                };
                let geometry: Geometry = measure_geometry_blocking(&inference, tokenizer, &texts, &options, |_, _| {})?;
                self.state.distances = geometry.sites.iter().map(|s| s.band_criterion).collect();
                self.state.band = Some(geometry.band.clone());
                ShiftPlan::from_site_vectors(&self.section.english, geometry.band.to, geometry.band.back, &geometry.vectors, conventions)?
            }
        };
        plan.check(model)?;
        self.state.plan = Some(plan);
        Ok(())
    }

    /// The released conventions' plan from the running sums: once English and at least one
    /// target language have a vector.
    fn online_plan(&self) -> Option<ShiftPlan> {
        let [to, back] = self.state.area?;
        let english = &self.section.english;
        if !self.state.online.contains_key(english) || self.state.online.len() < 2 {
            return None;
        }
        let vectors = self.state.online.iter().map(|(lang, v)| (lang.clone(), v.mean())).collect();
        Some(ShiftPlan { english: english.clone(), to, back, vectors, conventions: Conventions::Released })
    }

    /// The next `pairs_per_batch` pairs of `lang` (wrapping around its list).
    fn next_pairs(&mut self, lang: &str) -> Vec<(String, String)> {
        let list = &self.pairs[lang];
        let cursor = self.state.cursors.entry(lang.to_string()).or_insert(0);
        let out = (0..self.section.pairs_per_batch).map(|k| list[(*cursor + k) % list.len()].clone()).collect();
        *cursor = (*cursor + self.section.pairs_per_batch) % list.len();
        out
    }

    /// The band's contrastive sites and the sites the vectors are measured at.
    fn area(&self) -> Result<[usize; 2], TrainError> {
        match (&self.state.plan, self.state.area) {
            (_, Some(area)) if self.section.conventions.online_vectors() => Ok(area),
            (Some(plan), _) => Ok([plan.to, plan.back]),
            _ => Err(ShifconError::Invalid("ShifCon has no band yet (start was not called)".into()).into()),
        }
    }

    /// What the contrastive loss's target sentences in `lang` run under: the plan's shift when the
    /// pass is shifted ([`ShifconConfig::shifted_contrastive_pass`]), nothing otherwise (the
    /// ablation, and the released conventions).
    pub fn contrastive_target_interventions(&self, lang: &str, device: &Device) -> Result<Interventions, TrainError> {
        match (self.section.shifted_contrastive_pass(), &self.state.plan) {
            (true, Some(plan)) => Ok(plan.interventions(lang, device)?),
            (true, None) if !self.section.conventions.online_vectors() => Err(no_plan()),
            _ => Ok(Interventions::none()),
        }
    }

    /// Mean over the band's sites of the symmetric InfoNCE between English and target states;
    /// under the released conventions also adds this batch to the online vectors.
    fn contrastive(&mut self, model: &CausalLm, tokenizer: &TextTokenizer, lang: &str) -> Result<Tensor<1>, TrainError> {
        let pairs = self.next_pairs(lang);
        let [to, back] = self.area()?;
        let conventions = self.section.conventions;
        let online = conventions.online_vectors();
        // The loss uses sites to..back; the online vectors also need site `back`.
        let sites: Vec<usize> = if online { (to..=back).collect() } else { (to..back).collect() };
        let device = model.device();
        let english: Vec<&str> = pairs.iter().map(|p| p.0.as_str()).collect();
        let target: Vec<&str> = pairs.iter().map(|p| p.1.as_str()).collect();
        let en_batch = sentence_batch(tokenizer, &english, PAIR_MAX_TOKENS)?;
        let target_batch = sentence_batch(tokenizer, &target, PAIR_MAX_TOKENS)?;
        let target_shift = self.contrastive_target_interventions(lang, &device)?;
        let pooling = conventions.pooling();
        let mut en_states = pooled_states(model, &en_batch, &sites, &Interventions::none(), pooling)?;
        let mut target_states = pooled_states(model, &target_batch, &sites, &target_shift, pooling)?;
        let unit = |t: Tensor<2>| {
            let norm = t.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
            t / norm
        };
        if online {
            let (en_back, target_back) = (en_states.pop(), target_states.pop());
            let batch_mean = |states: &Tensor<2>| -> Result<Vec<f64>, TrainError> {
                let [n, d] = states.dims();
                let values = rosetta_model::readback::block_on(rosetta_model::readback::to_vec_f32(states.clone().detach()))
                    .map_err(ShifconError::from)?;
                let mut mean = vec![0.0; d];
                for row in values.chunks(d) {
                    let mut state: Vec<f64> = row.iter().map(|&v| v as f64).collect();
                    unit_length(&mut state);
                    mean.iter_mut().zip(&state).for_each(|(m, v)| *m += v / n as f64);
                }
                Ok(mean)
            };
            if let (Some(en_back), Some(target_back), Some(en_to), Some(target_to)) =
                (en_back, target_back, en_states.first(), target_states.first())
            {
                let (en_to, en_back) = (batch_mean(en_to)?, batch_mean(&en_back)?);
                let (target_to, target_back) = (batch_mean(target_to)?, batch_mean(&target_back)?);
                self.state.online.entry(self.section.english.clone()).or_default().add(&en_to, &en_back);
                self.state.online.entry(lang.to_string()).or_default().add(&target_to, &target_back);
                self.state.plan = self.online_plan();
            }
        }
        let options = ContrastiveOptions { scale: self.section.scale as f32, shift: self.section.recentre };
        let mut total: Option<Tensor<1>> = None;
        let count = en_states.len();
        for (a, p) in en_states.into_iter().zip(target_states) {
            let loss = contrastive_loss(unit(a), unit(p), options).map_err(ShifconError::from)?;
            total = Some(match total {
                Some(t) => t + loss,
                None => loss,
            });
        }
        let total = total.ok_or_else(|| ShifconError::Invalid(format!("the band {to}..{back} has no sites")))?;
        Ok(total.div_scalar(count as f32))
    }
}

impl Method for ShifconMethod {
    fn name(&self) -> &'static str {
        crate::config::TABLE
    }

    fn settings(&self) -> serde_json::Value {
        self.section.settings()
    }

    fn upgrade_settings(&self, stored: serde_json::Value) -> serde_json::Value {
        ShifconConfig::upgrade_stored(stored)
    }

    fn start(&mut self, model: &CausalLm, tokenizer: &TextTokenizer) -> rosetta_train::Result<()> {
        self.estimate(model, tokenizer)?;
        Ok(())
    }

    fn loss(
        &mut self,
        model: &CausalLm,
        tokenizer: &TextTokenizer,
        rows: &[PackedRow],
        micro: MicroBatch,
    ) -> rosetta_train::Result<MethodLoss> {
        let device = model.device();
        let mut parts = BTreeMap::new();
        // The released code updates its vectors from the contrastive batch before the generation
        // forward of the same step uses them: the contrastive term comes first.
        let contrastive = if self.section.contrastive_weight > 0.0 {
            let langs = &self.section.langs;
            let lang = langs[(micro.step * micro.count + micro.index) % langs.len()].clone();
            let contrastive = self.contrastive(model, tokenizer, &lang)?.div_scalar(micro.count as f32);
            parts.insert("contrastive".to_string(), contrastive.clone().into_scalar::<f32>() as f64);
            Some(contrastive)
        } else {
            None
        };
        let shift = match (self.section.shift_generation, &self.state.plan) {
            (true, Some(plan)) => plan.per_token_interventions(rows, &device),
            // Released conventions before any vector exists: the released code also leaves the
            // forward alone until a language has vectors.
            (true, None) if self.section.conventions.online_vectors() => Interventions::none(),
            (true, None) => return Err(no_plan()),
            (false, _) => Interventions::none(),
        };
        let generation = packed_loss(model, rows, micro.normalizer, &shift)?;
        parts.insert("generation".to_string(), generation.clone().into_scalar::<f32>() as f64);
        let mut total = generation.mul_scalar(self.section.generation_weight as f32);
        if let Some(contrastive) = contrastive {
            total = total + contrastive.mul_scalar(self.section.contrastive_weight as f32);
        }
        Ok(MethodLoss { total, parts })
    }

    fn after_step(&mut self, model: &CausalLm, tokenizer: &TextTokenizer, step: usize) -> rosetta_train::Result<()> {
        let every = self.section.update_vectors_every;
        if every > 0 && step.is_multiple_of(every) {
            self.estimate(model, tokenizer)?;
        }
        Ok(())
    }

    fn eval_interventions(&self, lang: &str, device: &Device) -> rosetta_train::Result<Interventions> {
        if self.state.plan.is_none() && self.section.conventions.online_vectors() {
            return Ok(Interventions::none());
        }
        let plan = self.plan_or_error()?;
        if plan.deltas(lang).is_none() {
            return Ok(Interventions::none());
        }
        Ok(plan.interventions(lang, device)?)
    }

    fn state(&self) -> serde_json::Value {
        serde_json::to_value(&self.state).unwrap_or_default()
    }

    fn restore(&mut self, state: serde_json::Value) -> rosetta_train::Result<()> {
        self.state = serde_json::from_value(state)
            .map_err(|e| TrainError::Resume(format!("the checkpoint's ShifCon state is unreadable ({e}); start a new run.out")))?;
        if self.state.plan.is_none() && !self.section.conventions.online_vectors() {
            return Err(TrainError::Resume("the checkpoint has no ShifCon language vectors; start a new run.out".into()));
        }
        Ok(())
    }

    fn export_record(&self) -> serde_json::Value {
        json!({
            "paper": "Zhang et al., ShifCon, ACL 2025 (arXiv:2410.19453)",
            "plan": self.state.plan,
            "band": self.state.plan.as_ref().map(|p| [p.to, p.back]),
            "added_at": self.state.plan.as_ref().map(|p| p.added_at()),
            "conventions": self.section.conventions,
            "band_chosen_by": match (self.section.band.is_some(), self.section.conventions) {
                (true, _) => "config",
                (false, Conventions::Released) => "the released area scaled to the model",
                (false, Conventions::Rosetta) => "subspace distance (covariance term), modal window under resampling",
            },
            "band_choice": self.state.band,
            "distances": self.state.distances,
            "section": self.section,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_online_vector_is_the_mean_of_its_batch_means() {
        let mut v = OnlineVector::default();
        v.add(&[1.0, 2.0], &[0.0, 4.0]);
        v.add(&[3.0, -2.0], &[2.0, 0.0]);
        assert_eq!(v.mean(), SiteVectors { at_to: vec![2.0, 0.0], at_back: vec![1.0, 2.0] });
        assert_eq!(v.batches, 2);
        // Through the checkpoint's JSON bit for bit, including sums no decimal prints exactly.
        v.add(&[0.1 + 0.2, 1.0 / 3.0], &[std::f64::consts::PI, 1e-300]);
        let back: OnlineVector = serde_json::from_value(serde_json::to_value(&v).unwrap()).unwrap();
        assert_eq!(back, v);
    }
}
