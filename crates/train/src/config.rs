//! A training run, fully described: written as TOML by a person, saved next to the checkpoints,
//! and compared on `--resume` so a resumed run is the same run.
//!
//! ```toml
//! [model]
//! path = "SmolLM2-135M-Instruct.Q4_1.gguf"   # omit for the default model
//!
//! [data]
//! objective = "causal-lm"                     # or "sft" (instruction JSONL, loss on responses)
//! train = ["data/corpus/monolingual.train.jsonl"]
//! mix = "hu:0.75,en:0.25"
//! eval = "data/corpus/monolingual.test.jsonl"
//! seq_len = 256
//! batch_size = 4
//!
//! [optim]
//! lr = 1e-4
//! warmup_steps = 10
//! precision = "f32"                           # or "bf16", "f16" (f32 master weights)
//!
//! [run]
//! steps = 200
//! out = "runs/hu-cpt"
//!
//! [lora]                                      # omit for full fine-tuning
//! rank = 8
//! alpha = 16.0
//!
//! [shifcon]                                   # a training method's own table (at most one)
//! parallel = "data/corpus/parallel.train.jsonl"
//! langs = ["hu"]
//! ```
//!
//! Any other top-level table belongs to a training **method** (ShifCon's `[shifcon]`, …). The
//! trainer does not read it: it carries the table verbatim in [`TrainConfig::methods`], and the
//! method's own crate parses and validates it (`rosetta_shifcon::ShifconConfig::from_table`).
//! On resume the method's parsed settings ([`crate::Method::settings`]) are compared.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::precision::TrainPrecision;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    #[serde(default)]
    pub model: ModelSection,
    pub data: DataSection,
    #[serde(default)]
    pub optim: OptimSection,
    pub run: RunSection,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraSection>,
    #[serde(default)]
    pub freeze: FreezeSection,
    /// Training methods' own tables (`[shifcon]` → `"shifcon"`), verbatim: the method crate
    /// parses them. Empty for plain CPT/SFT.
    #[serde(skip)]
    pub methods: BTreeMap<String, toml::Table>,
    /// The directory relative paths in the config (method tables included) are relative to.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// The keys of [`TrainConfig::identity`] besides `methods`: what a resumed run must agree on.
pub const IDENTITY_KEYS: [&str; 6] = ["model", "data", "optim", "seed", "lora", "freeze"];

/// The sections the trainer itself reads; every other top-level table is a method's.
pub const TRAINER_SECTIONS: [&str; 6] = ["model", "data", "optim", "run", "lora", "freeze"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// HF directory, GGUF or safetensors file; `None` = the default model.
    pub path: Option<PathBuf>,
    pub tokenizer: Option<PathBuf>,
    /// `cpu`, `wgpu` or `cuda`; several entries train data-parallel on several devices.
    #[serde(default = "default_devices")]
    pub devices: Vec<String>,
}

fn default_devices() -> Vec<String> {
    vec!["cpu".into()]
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection { path: None, tokenizer: None, devices: default_devices() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// Next-token prediction on every token of documents (continued pretraining).
    CausalLm,
    /// Instruction tuning: the chat template around instruction and response, loss on the response.
    Sft,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    #[serde(default = "default_objective")]
    pub objective: Objective,
    /// Training files: monolingual JSONL/text (causal-lm) or instruction JSONL (sft).
    pub train: Vec<PathBuf>,
    /// Language mixture, e.g. `hu:0.75,en:0.25`; `None` = every language as it comes.
    pub mix: Option<String>,
    /// Language of plain-text training files.
    pub lang: Option<String>,
    /// Held-out documents (monolingual JSONL) for bits/char at eval steps.
    pub eval: Option<PathBuf>,
    /// Languages to evaluate; default: those of the mixture.
    #[serde(default)]
    pub eval_langs: Vec<String>,
    #[serde(default = "default_eval_docs")]
    pub eval_docs_per_lang: usize,
    #[serde(default = "default_seq_len")]
    pub seq_len: usize,
    /// Rows per optimizer step (across devices), before accumulation.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    #[serde(default = "one")]
    pub grad_accum: usize,
    #[serde(default)]
    pub skip_bad_lines: bool,
}

fn default_objective() -> Objective {
    Objective::CausalLm
}
fn default_eval_docs() -> usize {
    50
}
fn default_seq_len() -> usize {
    256
}
fn default_batch_size() -> usize {
    4
}
fn one() -> usize {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimSection {
    /// Peak learning rate (after warmup).
    pub lr: f64,
    /// Learning rate at the end of the cosine decay.
    pub min_lr: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    /// Clip the global gradient norm to this; `None` disables clipping.
    pub grad_clip: Option<f64>,
    /// What a step computes in: `f32`, or `bf16` / `f16` with f32 master weights, optimizer
    /// state and loss ([`crate::precision`]). Absent from the identity of f32 runs, so their
    /// checkpoints from before the setting existed still resume.
    #[serde(skip_serializing_if = "TrainPrecision::is_f32")]
    pub precision: TrainPrecision,
    /// Keep only each decoder layer's input for backward and replay the layer there (the CPU
    /// backend — f32 compute or bf16 products — and the GPU backends in f32): memory for one
    /// layer's activations instead of every layer's, for one more forward per step. The same
    /// gradients, so not part of a run's identity: a run may resume with it switched either way.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub activation_checkpointing: bool,
}

impl Default for OptimSection {
    fn default() -> Self {
        OptimSection {
            lr: 1e-4,
            min_lr: 1e-5,
            warmup_steps: 10,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.95,
            epsilon: 1e-8,
            grad_clip: Some(1.0),
            precision: TrainPrecision::F32,
            activation_checkpointing: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    pub steps: usize,
    pub out: PathBuf,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_eval_every")]
    pub eval_every: usize,
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
    #[serde(default = "default_keep_last")]
    pub keep_last: usize,
    /// Export the final model as an HF directory to `<out>/final`.
    #[serde(default = "yes")]
    pub export: bool,
}

fn default_eval_every() -> usize {
    50
}
fn default_checkpoint_every() -> usize {
    50
}
fn default_keep_last() -> usize {
    2
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraSection {
    pub rank: usize,
    pub alpha: f64,
    /// Projections to adapt (`q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`,
    /// `down_proj`).
    #[serde(default = "default_lora_targets")]
    pub targets: Vec<String>,
    /// Start from this PEFT adapter directory (`adapter_config.json` + `adapter_model.safetensors`)
    /// instead of fresh factors; its rank, alpha and targets must be the section's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
    /// What the frozen base is stored as (see [`LoraBase`]).
    #[serde(default, skip_serializing_if = "LoraBase::is_auto")]
    pub base: LoraBase,
}

/// How a LoRA run stores its frozen base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoraBase {
    /// A quantized checkpoint's projections stay in their blocks (QLoRA, Dettmers et al. 2023)
    /// where the fused packed op trains over them — the CPU backend, f32 or bf16 products — and
    /// are dequantised to f32 elsewhere; an f32 checkpoint is f32.
    #[default]
    Auto,
    /// Every weight dequantised to f32.
    F32,
}

impl LoraBase {
    fn is_auto(&self) -> bool {
        *self == LoraBase::Auto
    }
}

fn default_lora_targets() -> Vec<String> {
    LoraSection::all_targets()
}

impl LoraSection {
    /// All seven projections of a decoder layer.
    pub fn all_targets() -> Vec<String> {
        rosetta_model::LinearKind::ALL.iter().map(|k| k.short_name().to_string()).collect()
    }
}

/// Which parameters train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trainable {
    /// Every parameter (or the LoRA factors, with `[lora]`).
    #[default]
    All,
    /// Only the input embedding and the output head.
    Embeddings,
    /// Only the new rows of the embedding and head — stage 1 of vocabulary extension: rows
    /// `new_rows_from..`, or, without it, the `new_token_ids` that `rosetta vocab extend` wrote to
    /// the checkpoint's `rosetta.json` (Csaki et al.: new tokens learn their vectors while the
    /// model stays as it was).
    NewEmbeddingRows,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeSection {
    #[serde(default)]
    pub trainable: Trainable,
    pub new_rows_from: Option<usize>,
}

impl TrainConfig {
    /// Reads and checks a TOML config; unknown keys (typos) are errors that name the key.
    /// Relative paths in it are relative to the config file's directory.
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TrainError::Config { path: path.to_path_buf(), reason: format!("cannot read: {e}") })?;
        let mut config = Self::from_toml_str(&text).map_err(|reason| TrainError::Config { path: path.to_path_buf(), reason })?;
        config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        config.validate().map_err(|reason| TrainError::Config { path: path.to_path_buf(), reason })?;
        Ok(config)
    }

    /// Parses a config: the trainer's sections strictly (unknown keys are errors naming the
    /// key), every other top-level table kept verbatim as a method's table.
    pub fn from_toml_str(text: &str) -> std::result::Result<Self, String> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
        let mut methods = BTreeMap::new();
        let foreign: Vec<String> = table.keys().filter(|k| !TRAINER_SECTIONS.contains(&k.as_str())).cloned().collect();
        for key in foreign {
            match table.remove(&key) {
                Some(toml::Value::Table(method)) => {
                    methods.insert(key, method);
                }
                _ => {
                    return Err(format!(
                        "unknown top-level key `{key}`: a config holds the sections {} and at most one method table such as [shifcon]",
                        TRAINER_SECTIONS.map(|s| format!("[{s}]")).join(", ")
                    ));
                }
            }
        }
        let mut config: TrainConfig = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| e.to_string())?;
        config.methods = methods;
        Ok(config)
    }

    /// Makes every relative path absolute against `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        // A Hugging Face id (`org/name`) stays an id unless such a directory sits beside the config.
        let is_hub_id = |p: &PathBuf| p.to_str().and_then(rosetta_model::hub::HubId::parse).is_some() && !base.join(p).exists();
        self.model.path.iter_mut().filter(|p| !is_hub_id(p)).for_each(resolve);
        self.model.tokenizer.iter_mut().for_each(resolve);
        if let Some(lora) = &mut self.lora {
            lora.init.iter_mut().for_each(resolve);
        }
        self.data.train.iter_mut().for_each(resolve);
        self.data.eval.iter_mut().for_each(resolve);
        resolve(&mut self.run.out);
        self.base_dir = base.to_path_buf();
    }

    /// The config as TOML, each method table replaced by that method's parsed settings (paths
    /// absolute, defaults filled in) so the saved copy describes the run on its own.
    pub fn to_toml(&self, method_settings: &BTreeMap<String, serde_json::Value>) -> String {
        let mut table = toml::Table::try_from(self).unwrap_or_default();
        for (name, raw) in &self.methods {
            let settings = method_settings.get(name).and_then(|s| toml::Value::try_from(s).ok());
            table.insert(name.clone(), settings.unwrap_or_else(|| toml::Value::Table(raw.clone())));
        }
        for (name, settings) in method_settings.iter().filter(|(n, _)| !self.methods.contains_key(*n)) {
            if let Ok(value) = toml::Value::try_from(settings) {
                table.insert(name.clone(), value);
            }
        }
        toml::to_string_pretty(&table).unwrap_or_default()
    }

    /// Checks ranges and combinations; the message names the field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let d = &self.data;
        let o = &self.optim;
        let r = &self.run;
        if d.train.is_empty() {
            return Err("data.train names no files".into());
        }
        if d.seq_len < 2 || d.batch_size == 0 || d.grad_accum == 0 {
            return Err("data.seq_len must be ≥ 2, data.batch_size and data.grad_accum ≥ 1".into());
        }
        if self.model.devices.is_empty() {
            return Err("model.devices is empty".into());
        }
        crate::remote::check_device_order(&self.model.devices)?;
        if !d.batch_size.is_multiple_of(self.model.devices.len()) {
            return Err(format!(
                "data.batch_size ({}) must be a multiple of the number of devices ({})",
                d.batch_size,
                self.model.devices.len()
            ));
        }
        if !(o.lr > 0.0 && o.lr.is_finite()) || !(o.min_lr >= 0.0 && o.min_lr <= o.lr) {
            return Err(format!("optim.lr must be positive and optim.min_lr in [0, lr] (got {} and {})", o.lr, o.min_lr));
        }
        if !(0.0..1.0).contains(&o.beta1) || !(0.0..1.0).contains(&o.beta2) || !(o.epsilon > 0.0) {
            return Err("optim.beta1 and beta2 must be in [0, 1), epsilon positive".into());
        }
        if o.weight_decay < 0.0 || o.grad_clip.is_some_and(|c| !(c > 0.0)) {
            return Err("optim.weight_decay must be ≥ 0 and optim.grad_clip positive".into());
        }
        if r.steps == 0 || r.checkpoint_every == 0 || r.eval_every == 0 || r.keep_last == 0 {
            return Err("run.steps, checkpoint_every, eval_every and keep_last must be ≥ 1".into());
        }
        if let Some(l) = &self.lora {
            if l.rank == 0 || !(l.alpha > 0.0) {
                return Err("lora.rank must be ≥ 1 and lora.alpha positive".into());
            }
            for t in &l.targets {
                if rosetta_model::LinearKind::from_short_name(t).is_none() {
                    return Err(format!(
                        "lora.targets: `{t}` is not a projection (use q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)"
                    ));
                }
            }
            if self.freeze.trainable != Trainable::All {
                return Err("[lora] trains adapters; combine it only with freeze.trainable = \"all\"".into());
            }
        }
        if self.methods.len() > 1 {
            let names: Vec<String> = self.methods.keys().map(|k| format!("[{k}]")).collect();
            return Err(format!("a run trains with at most one method, but the config has {}", names.join(" and ")));
        }
        if d.objective == Objective::Sft && d.mix.is_some() {
            return Err("data.mix applies to causal-lm documents; SFT uses every instruction record".into());
        }
        Ok(())
    }

    /// The parts of the config that change the computation: a resumed run must agree on them.
    /// `methods` are the methods' parsed settings ([`crate::Method::settings`]) by table name.
    pub fn identity(&self, methods: &BTreeMap<String, serde_json::Value>) -> serde_json::Value {
        serde_json::json!({
            "model": self.model,
            "data": self.data,
            "optim": OptimSection { activation_checkpointing: false, ..self.optim.clone() },
            "seed": self.run.seed,
            "lora": self.lora,
            "freeze": self.freeze,
            "methods": methods,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[data]
train = ["docs.jsonl"]
mix = "hu:0.75,en:0.25"

[run]
steps = 10
out = "runs/x"
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let config = TrainConfig::from_toml_str(MINIMAL).unwrap();
        config.validate().unwrap();
        assert_eq!(config.data.seq_len, 256);
        assert_eq!(config.optim.warmup_steps, 10);
        assert_eq!(config.model.devices, vec!["cpu"]);
        let again = TrainConfig::from_toml_str(&config.to_toml(&BTreeMap::new())).unwrap();
        assert_eq!(again, config);
    }

    #[test]
    fn typos_and_bad_values_are_named() {
        let typo = MINIMAL.replace("steps = 10", "stepz = 10");
        let err = TrainConfig::from_toml_str(&typo).unwrap_err();
        assert!(err.contains("stepz"), "{err}");
        let mut config = TrainConfig::from_toml_str(MINIMAL).unwrap();
        config.optim.min_lr = 1.0;
        assert!(config.validate().unwrap_err().contains("min_lr"));
        let mut config = TrainConfig::from_toml_str(MINIMAL).unwrap();
        config.lora = Some(LoraSection { rank: 4, alpha: 8.0, targets: vec!["qproj".into()], init: None, base: LoraBase::Auto });
        assert!(config.validate().unwrap_err().contains("`qproj`"));
    }

    #[test]
    fn method_tables_are_carried_verbatim_and_foreign_keys_refused() {
        let text = format!("{MINIMAL}\n[shifcon]\nlangs = [\"hu\"]\nsomething_new = 3\n");
        let config = TrainConfig::from_toml_str(&text).unwrap();
        let table = &config.methods["shifcon"];
        assert_eq!(table["something_new"].as_integer(), Some(3), "the trainer does not interpret a method's table");
        let err = TrainConfig::from_toml_str(&format!("stray = 1\n{MINIMAL}")).unwrap_err();
        assert!(err.contains("`stray`"), "{err}");
        let two = format!("{text}\n[other]\nx = 1\n");
        let err = TrainConfig::from_toml_str(&two).unwrap().validate().unwrap_err();
        assert!(err.contains("[other]") && err.contains("[shifcon]"), "{err}");
    }
}
