//! ShifCon training as a [`rosetta_train::Method`]: per micro-batch,
//!
//! ```text
//! loss = w_gen · L_generation(shifted forward) + w_con · mean over band sites of InfoNCE(en, shifted target)
//! ```
//!
//! The generation loss runs on the trainer's packed rows with every token shifted by its own
//! document's language vectors (English untouched). The contrastive loss takes `pairs_per_batch`
//! parallel (English, target) sentences of one target language (languages take turns), runs the
//! English side plain and the target side with the shift, mean-pools both at every site of the band
//! [L_to, L_bk), L2-normalises, and applies `rosetta-kernels`' symmetric InfoNCE with the in-loss
//! mean shift (t − mean(t) + mean(en)): the fused WGSL kernel on wgpu, the reference elsewhere.
//!
//! Language vectors are estimated on `vector_sentences` parallel sentences with the model as it
//! is before training (and, if asked, again every `update_vectors_every` steps); when no band is
//! given, the same states choose it ([`crate::geometry`]). The band, vectors and per-site
//! distances go into the exported model's `rosetta.json`, so `rosetta score`/`generate` shift
//! automatically.

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
use crate::error::ShifconError;
use crate::geometry::{Geometry, GeometryOptions};
use crate::measure::{MIN_GEOMETRY_SENTENCES, MeasureOptions, measure_geometry_blocking};
use crate::shift::ShiftPlan;
use crate::states::{pooled_states, sentence_batch};

/// A ShifCon error reaches the trainer whole (message and causes), as a method's error.
impl From<ShifconError> for TrainError {
    fn from(e: ShifconError) -> Self {
        TrainError::Method(Box::new(e))
    }
}

/// Tokens per contrastive sentence (a sentence mean needs no more).
const PAIR_MAX_TOKENS: usize = 64;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ShifconState {
    /// Next pair index per target language (into its shuffled pair list).
    cursors: BTreeMap<String, usize>,
    plan: Option<ShiftPlan>,
    /// Per-site mean shifted distance of the band choice (for the record).
    distances: Vec<f64>,
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
        self.state
            .plan
            .as_ref()
            .ok_or_else(|| ShifconError::Invalid("ShifCon has no language vectors yet (start was not called)".into()).into())
    }

    /// Estimates the vectors (and, without a configured band, the band) on `model`.
    fn estimate(&mut self, model: &CausalLm, tokenizer: &TextTokenizer) -> Result<(), ShifconError> {
        let band = match (self.section.band, &self.state.plan) {
            (Some([to, back]), _) => Some((to, back)),
            (None, Some(plan)) => Some((plan.to, plan.back)),
            (None, None) => None,
        };
        let inference = model.valid();
        let texts: BTreeMap<String, Vec<&str>> =
            self.vector_texts.iter().map(|(l, t)| (l.clone(), t.iter().map(String::as_str).collect())).collect();
        let plan = match band {
            Some((to, back)) => ShiftPlan::estimate_blocking(&inference, tokenizer, &texts, &self.section.english, to, back)?,
            None => {
                let options = MeasureOptions {
                    geometry: GeometryOptions { english: self.section.english.clone(), beta: self.section.beta, ..Default::default() },
                    ..Default::default()
                };
                let geometry: Geometry = measure_geometry_blocking(&inference, tokenizer, &texts, &options, |_, _| {})?;
                self.state.distances = geometry.sites.iter().map(|s| s.mean_shifted_distance).collect();
                ShiftPlan::from_site_vectors(&self.section.english, geometry.band.to, geometry.band.back, &geometry.vectors)?
            }
        };
        plan.check(model)?;
        self.state.plan = Some(plan);
        Ok(())
    }

    /// The next `pairs_per_batch` pairs of `lang` (wrapping around its list).
    fn next_pairs(&mut self, lang: &str) -> Vec<(String, String)> {
        let list = &self.pairs[lang];
        let cursor = self.state.cursors.entry(lang.to_string()).or_insert(0);
        let out = (0..self.section.pairs_per_batch).map(|k| list[(*cursor + k) % list.len()].clone()).collect();
        *cursor = (*cursor + self.section.pairs_per_batch) % list.len();
        out
    }

    /// Mean over the band's sites of the symmetric InfoNCE between English and target states.
    fn contrastive(&mut self, model: &CausalLm, tokenizer: &TextTokenizer, lang: &str) -> Result<Tensor<1>, TrainError> {
        let pairs = self.next_pairs(lang);
        let plan = self.plan_or_error()?;
        let sites: Vec<usize> = (plan.to..plan.back).collect();
        let device = model.device();
        let english: Vec<&str> = pairs.iter().map(|p| p.0.as_str()).collect();
        let target: Vec<&str> = pairs.iter().map(|p| p.1.as_str()).collect();
        let en_batch = sentence_batch(tokenizer, &english, PAIR_MAX_TOKENS)?;
        let target_batch = sentence_batch(tokenizer, &target, PAIR_MAX_TOKENS)?;
        let en_states = pooled_states(model, &en_batch, &sites, &Interventions::none())?;
        let target_states = pooled_states(model, &target_batch, &sites, &plan.interventions(lang, &device)?)?;
        let options = ContrastiveOptions { scale: self.section.scale as f32, shift: self.section.shift_contrastive };
        let unit = |t: Tensor<2>| {
            let norm = t.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
            t / norm
        };
        let mut total: Option<Tensor<1>> = None;
        for (a, p) in en_states.into_iter().zip(target_states) {
            let loss = contrastive_loss(unit(a), unit(p), options).map_err(ShifconError::from)?;
            total = Some(match total {
                Some(t) => t + loss,
                None => loss,
            });
        }
        let total = total.ok_or_else(|| ShifconError::Invalid(format!("the band {}..{} has no sites", plan.to, plan.back)))?;
        Ok(total.div_scalar(sites.len() as f32))
    }
}

impl Method for ShifconMethod {
    fn name(&self) -> &'static str {
        crate::config::TABLE
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::to_value(&self.section).unwrap_or_default()
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
        let shift = if self.section.shift_generation {
            self.plan_or_error()?.per_token_interventions(rows, &device)
        } else {
            Interventions::none()
        };
        let generation = packed_loss(model, rows, micro.normalizer, &shift)?;
        let mut parts = BTreeMap::new();
        parts.insert("generation".to_string(), generation.clone().into_scalar::<f32>() as f64);
        let mut total = generation.mul_scalar(self.section.generation_weight as f32);
        if self.section.contrastive_weight > 0.0 {
            let langs = &self.section.langs;
            let lang = langs[(micro.step * micro.count + micro.index) % langs.len()].clone();
            let contrastive = self.contrastive(model, tokenizer, &lang)?.div_scalar(micro.count as f32);
            parts.insert("contrastive".to_string(), contrastive.clone().into_scalar::<f32>() as f64);
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
        if self.state.plan.is_none() {
            return Err(TrainError::Resume("the checkpoint has no ShifCon language vectors; start a new run.out".into()));
        }
        Ok(())
    }

    fn export_record(&self) -> serde_json::Value {
        json!({
            "paper": "Zhang et al., ShifCon, ACL 2025 (arXiv:2410.19453)",
            "plan": self.state.plan,
            "band": self.state.plan.as_ref().map(|p| [p.to, p.back]),
            "band_chosen_by": if self.section.band.is_some() { "config" } else { "subspace distance" },
            "distances": self.state.distances,
            "section": self.section,
        })
    }
}
