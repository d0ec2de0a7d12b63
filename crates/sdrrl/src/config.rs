//! A transfer-set build, fully described (TOML or flags): languages, how answers and
//! translations are made, the share of every kind of example, generation limits and filters.
//! The paper does not publish its proportions; the default is equal shares.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Result, SdrrlError};
use crate::filters::FilterConfig;

/// The kinds of examples in a transfer set (x = instruction, y = answer; en = source language,
/// t = target).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// (x_en, y_en): the model's own source-language answer (keeps the source language).
    Source,
    /// (x_t, y_t): instruction and answer translated.
    Translated,
    /// (x_t, y_en): target instruction, source answer.
    TargetInstruction,
    /// (x_en, y_t): source instruction, target answer.
    SourceInstruction,
    /// Instruction and answer with some words swapped for target-language ones.
    CodeSwitch,
    /// (x_t, prefix of y_t + the model's own completion of it).
    Completion,
    /// A parallel pair as a translation instruction.
    Parallel,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Source,
        Kind::Translated,
        Kind::TargetInstruction,
        Kind::SourceInstruction,
        Kind::CodeSwitch,
        Kind::Completion,
        Kind::Parallel,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Source => "source",
            Kind::Translated => "translated",
            Kind::TargetInstruction => "target_instruction",
            Kind::SourceInstruction => "source_instruction",
            Kind::CodeSwitch => "code_switch",
            Kind::Completion => "completion",
            Kind::Parallel => "parallel",
        }
    }
}

/// Relative shares of the kinds (normalised over those above 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shares {
    #[serde(default = "one")]
    pub source: f64,
    #[serde(default = "one")]
    pub translated: f64,
    #[serde(default = "one")]
    pub target_instruction: f64,
    #[serde(default = "one")]
    pub source_instruction: f64,
    #[serde(default = "one")]
    pub code_switch: f64,
    #[serde(default = "one")]
    pub completion: f64,
    #[serde(default = "one")]
    pub parallel: f64,
}

fn one() -> f64 {
    1.0
}

impl Default for Shares {
    fn default() -> Self {
        Shares {
            source: 1.0,
            translated: 1.0,
            target_instruction: 1.0,
            source_instruction: 1.0,
            code_switch: 1.0,
            completion: 1.0,
            parallel: 1.0,
        }
    }
}

impl Shares {
    pub fn get(&self, kind: Kind) -> f64 {
        match kind {
            Kind::Source => self.source,
            Kind::Translated => self.translated,
            Kind::TargetInstruction => self.target_instruction,
            Kind::SourceInstruction => self.source_instruction,
            Kind::CodeSwitch => self.code_switch,
            Kind::Completion => self.completion,
            Kind::Parallel => self.parallel,
        }
    }

    /// The translate-then-SFT baseline: source-language pairs and their translations only.
    pub fn translate_baseline() -> Self {
        Shares {
            source: 1.0,
            translated: 1.0,
            target_instruction: 0.0,
            source_instruction: 0.0,
            code_switch: 0.0,
            completion: 0.0,
            parallel: 0.0,
        }
    }
}

/// Where the source-language answers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Answers {
    /// The model's own answers (self-distillation: SDRRL).
    SelfDistill,
    /// The instruction file's reference answers (the translate-then-SFT baseline).
    Reference,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SdrrlConfig {
    #[serde(default = "english")]
    pub source_lang: String,
    pub targets: Vec<String>,
    #[serde(default = "self_distill")]
    pub answers: Answers,
    #[serde(default)]
    pub shares: Shares,
    /// Parallel JSONL for translation shots, the lexicon and the parallel kind (default: the
    /// embedded training split).
    pub parallel: Option<PathBuf>,
    /// External translations (JSONL `{"id", "lang", "instruction", "response"}`) instead of the
    /// model's own few-shot translations.
    pub translations: Option<PathBuf>,
    #[serde(default = "default_answer_tokens")]
    pub max_new_tokens: usize,
    #[serde(default = "default_translate_tokens")]
    pub translate_max_tokens: usize,
    /// Few-shot examples in each translation prompt.
    #[serde(default = "default_shots")]
    pub shots: usize,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Probability that a word with a lexicon entry is swapped.
    #[serde(default = "default_switch_rate")]
    pub code_switch_rate: f64,
    /// Fraction of a translated answer's words given as the completion prefix.
    #[serde(default = "default_prefix")]
    pub completion_prefix: f64,
    /// Use at most this many instructions (the first ones).
    pub max_instructions: Option<usize>,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub filters: FilterConfig,
}

fn english() -> String {
    "en".into()
}
fn self_distill() -> Answers {
    Answers::SelfDistill
}
fn default_answer_tokens() -> usize {
    96
}
fn default_translate_tokens() -> usize {
    96
}
fn default_shots() -> usize {
    3
}
fn default_batch() -> usize {
    8
}
fn default_switch_rate() -> f64 {
    0.3
}
fn default_prefix() -> f64 {
    0.4
}

impl SdrrlConfig {
    pub fn new(source_lang: &str, targets: &[String]) -> Self {
        SdrrlConfig {
            source_lang: source_lang.into(),
            targets: targets.to_vec(),
            answers: Answers::SelfDistill,
            shares: Shares::default(),
            parallel: None,
            translations: None,
            max_new_tokens: default_answer_tokens(),
            translate_max_tokens: default_translate_tokens(),
            shots: default_shots(),
            batch_size: default_batch(),
            code_switch_rate: default_switch_rate(),
            completion_prefix: default_prefix(),
            max_instructions: None,
            seed: 0,
            filters: FilterConfig::default(),
        }
    }

    /// Ranges and combinations; the message names the setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(SdrrlError::Invalid(m));
        if self.targets.is_empty() || self.targets.contains(&self.source_lang) {
            return bad(format!("targets must name languages other than the source `{}`", self.source_lang));
        }
        if Kind::ALL.iter().any(|k| !(self.shares.get(*k) >= 0.0)) || Kind::ALL.iter().all(|k| self.shares.get(*k) == 0.0) {
            return bad("shares must be ≥ 0 and at least one positive".into());
        }
        if self.max_new_tokens == 0 || self.translate_max_tokens == 0 || self.batch_size == 0 {
            return bad("max_new_tokens, translate_max_tokens and batch_size must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.code_switch_rate) || !(self.completion_prefix > 0.0 && self.completion_prefix < 1.0) {
            return bad("code_switch_rate must be in [0, 1] and completion_prefix in (0, 1)".into());
        }
        Ok(())
    }
}
