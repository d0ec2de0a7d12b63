//! What a training method adds to the plain loop. The trainer owns the schedule, the optimizer,
//! accumulation, clipping, NaN stops, checkpoints and evaluation; a [`Method`] (ShifCon in
//! `rosetta-shifcon`, SDRRL, …) supplies the loss of a micro-batch, how held-out text of a
//! language is scored, its own resumable state and what the exported model records.
//!
//! A method is configured by its own table in the run's TOML (`[shifcon]`), which the trainer
//! carries verbatim ([`crate::TrainConfig::methods`]) and the method's crate parses. Methods run
//! on one device: the trainer refuses a method with several `model.devices`.

use std::collections::BTreeMap;

use rosetta_data::PackedRow;
use rosetta_model::burn::prelude::*;
use rosetta_model::{CausalLm, Interventions, TextTokenizer};

use crate::error::Result;

/// A micro-batch's loss (already divided for the optimizer step: it is added over micro-batches)
/// and its named parts for the metrics log, in the same units.
pub struct MethodLoss {
    pub total: Tensor<1>,
    pub parts: BTreeMap<String, f64>,
}

/// Where a micro-batch stands in the step.
#[derive(Debug, Clone, Copy)]
pub struct MicroBatch {
    pub step: usize,
    pub index: usize,
    pub count: usize,
    /// Predicted tokens of the whole step (the generation loss's divisor).
    pub normalizer: f32,
}

pub trait Method {
    /// The name of the method's config table (`shifcon` for `[shifcon]`); also its key in the
    /// exported model's `rosetta.json`.
    fn name(&self) -> &'static str;

    /// The method's settings as it parsed its table (defaults filled in, paths absolute). Saved
    /// with every checkpoint and compared on resume, and written into the run's saved config.
    fn settings(&self) -> serde_json::Value;

    /// The settings a checkpoint stored, in today's form (settings added since filled in with
    /// what the old code did), so a run checkpointed before a method gained a setting resumes.
    /// Compared with [`Method::settings`] on resume.
    fn upgrade_settings(&self, stored: serde_json::Value) -> serde_json::Value {
        stored
    }

    /// Called once with the prepared model before the first step of a fresh run (not on resume,
    /// where [`Method::restore`] brings the state back).
    fn start(&mut self, _model: &CausalLm, _tokenizer: &TextTokenizer) -> Result<()> {
        Ok(())
    }

    fn loss(&mut self, model: &CausalLm, tokenizer: &TextTokenizer, rows: &[PackedRow], micro: MicroBatch) -> Result<MethodLoss>;

    /// Called after each optimizer step with the updated model.
    fn after_step(&mut self, _model: &CausalLm, _tokenizer: &TextTokenizer, _step: usize) -> Result<()> {
        Ok(())
    }

    /// How held-out text in `lang` is scored (the method's inference-time interventions).
    fn eval_interventions(&self, _lang: &str, _device: &Device) -> Result<Interventions> {
        Ok(Interventions::none())
    }

    /// State saved in every checkpoint.
    fn state(&self) -> serde_json::Value;
    fn restore(&mut self, state: serde_json::Value) -> Result<()>;

    /// Merged into the exported model's `rosetta.json` under [`Method::name`].
    fn export_record(&self) -> serde_json::Value;
}
