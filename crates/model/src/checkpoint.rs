//! Opening a checkpoint: an HF model directory, a GGUF file, or a lone `.safetensors` file with
//! its `config.json` and `tokenizer.json` beside it. Natively from paths; in the browser from
//! bytes the visitor picked.

use std::collections::BTreeMap;

use burn::prelude::*;
use serde_json::Value;

use crate::config::ModelConfig;
use crate::error::{ModelError, Origin, Result};
use crate::model::CausalLm;
use crate::nn::projection::Precision;
use crate::tokenizer::TextTokenizer;
use crate::weights::gguf::GgufFile;
use crate::weights::gguf_source::{self, GgufSource};
use crate::weights::safetensors_source::{SafetensorsFile, SafetensorsSource};
use crate::weights::{Blob, WeightSource};

/// The name of the file in an exported directory that holds Rosetta's own additions (language
/// vectors, shift bands, masks...), which HF tools ignore.
pub const ROSETTA_EXTRAS_FILE: &str = "rosetta.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum CheckpointFormat {
    HfDirectory,
    Gguf,
}

/// A checkpoint whose config and tokenizer are read and whose weights are ready to load.
pub struct Checkpoint {
    pub config: ModelConfig,
    pub tokenizer: TextTokenizer,
    pub format: CheckpointFormat,
    pub origin: Origin,
    source: Box<dyn WeightSource>,
    /// Contents of `rosetta.json`, if the checkpoint has one.
    pub extras: Option<Value>,
}

impl Checkpoint {
    /// Opens `path`: a directory (HF), a `.gguf` file, a `.safetensors` file whose directory
    /// has `config.json` and `tokenizer.json`, or a Hugging Face id `org/name[@revision]`
    /// ([`crate::hub`]: the local cache first). `tokenizer` overrides the tokenizer source (a
    /// `tokenizer.json` path or a directory holding one).
    #[cfg(not(target_family = "wasm"))]
    pub fn open(path: &std::path::Path, tokenizer: Option<&std::path::Path>) -> Result<Self> {
        let resolved = crate::hub::resolve(path, &crate::hub::HubSettings::from_env())?;
        let path = resolved.as_path();
        let origin = Origin(path.display().to_string());
        if !path.exists() {
            return Err(ModelError::NotAModel { origin, reason: "no such file or directory".into() });
        }
        let mut checkpoint = if path.is_dir() {
            Self::open_hf_dir(path, None)?
        } else if is_gguf(path)? {
            let file = GgufFile::parse(Blob::open(path)?, origin.clone())?;
            Self::from_gguf(file)?
        } else if path.extension().is_some_and(|e| e == "safetensors") {
            let dir = path.parent().unwrap_or(std::path::Path::new("."));
            Self::open_hf_dir(dir, Some(path))?
        } else {
            return Err(ModelError::NotAModel {
                origin,
                reason: "expected an HF model directory (config.json + *.safetensors + tokenizer.json), \
                         a .gguf file, or a .safetensors file"
                    .into(),
            });
        };
        if let Some(tok) = tokenizer {
            checkpoint.tokenizer = load_tokenizer_path(tok)?;
            checkpoint.check_tokenizer_fits()?;
        }
        Ok(checkpoint)
    }

    #[cfg(not(target_family = "wasm"))]
    fn open_hf_dir(dir: &std::path::Path, only_file: Option<&std::path::Path>) -> Result<Self> {
        let read = |name: &str| -> Result<Option<String>> {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok(Some(text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(ModelError::io(path.display().to_string(), e)),
            }
        };
        let config_path = dir.join("config.json");
        let config_json = read("config.json")?.ok_or_else(|| ModelError::NotAModel {
            origin: Origin(config_path.display().to_string()),
            reason: "missing; an HF model directory needs config.json".into(),
        })?;
        let source = match only_file {
            Some(file) => SafetensorsSource::from_files(
                file.display().to_string(),
                vec![SafetensorsFile::parse(Blob::open(file)?, file.display().to_string())?],
            )?,
            None => SafetensorsSource::open_dir(dir)?,
        };
        let tokenizer = load_tokenizer_dir(dir)?;
        let checkpoint = Self::assemble_hf(
            &config_json,
            config_path.display().to_string(),
            read("generation_config.json")?.as_deref(),
            tokenizer,
            Box::new(source),
            read(ROSETTA_EXTRAS_FILE)?,
            dir.display().to_string(),
        )?;
        Ok(checkpoint)
    }

    /// From in-memory HF files (the browser's file picker).
    pub fn from_hf_bytes(
        config_json: &str,
        tokenizer_json: &str,
        tokenizer_config_json: Option<&str>,
        shards: Vec<(String, Vec<u8>)>,
        name: &str,
    ) -> Result<Self> {
        let files = shards.into_iter().map(|(file, bytes)| SafetensorsFile::parse(Blob::from(bytes), file)).collect::<Result<Vec<_>>>()?;
        let source = SafetensorsSource::from_files(name, files)?;
        let tokenizer = TextTokenizer::from_hf_json(tokenizer_json, tokenizer_config_json, None, name)?;
        Self::assemble_hf(config_json, "config.json", None, tokenizer, Box::new(source), None, name.to_string())
    }

    fn assemble_hf(
        config_json: &str,
        config_origin: impl Into<Origin>,
        generation_config: Option<&str>,
        tokenizer: TextTokenizer,
        source: Box<dyn WeightSource>,
        extras: Option<String>,
        origin: String,
    ) -> Result<Self> {
        let mut config = ModelConfig::from_hf_json(config_json, config_origin)?;
        // `generation_config.json` may list more stop tokens (Llama 3 has two).
        if let Some(text) = generation_config
            && let Ok(value) = serde_json::from_str::<Value>(text)
        {
            let ids: Vec<u32> = match value.get("eos_token_id") {
                Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_u64().map(|x| x as u32)).collect(),
                Some(v) => v.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
                None => Vec::new(),
            };
            for id in ids {
                if !config.eos_token_ids.contains(&id) {
                    config.eos_token_ids.push(id);
                }
            }
        }
        let extras = extras
            .map(|text| {
                serde_json::from_str(&text).map_err(|e| ModelError::NotAModel {
                    origin: Origin(format!("{origin}/{ROSETTA_EXTRAS_FILE}")),
                    reason: format!("not valid JSON: {e}"),
                })
            })
            .transpose()?;
        let checkpoint = Checkpoint { config, tokenizer, format: CheckpointFormat::HfDirectory, origin: Origin(origin), source, extras };
        checkpoint.check_tokenizer_fits()?;
        Ok(checkpoint)
    }

    /// From a parsed GGUF file, with the tokenizer rebuilt from its metadata.
    pub fn from_gguf(file: GgufFile) -> Result<Self> {
        let config = gguf_source::model_config(&file)?;
        let tokenizer = TextTokenizer::from_gguf(&file)?;
        let origin = file.origin.clone();
        let checkpoint = Checkpoint {
            source: Box::new(GgufSource::new(file, &config)),
            config,
            tokenizer,
            format: CheckpointFormat::Gguf,
            origin,
            extras: None,
        };
        checkpoint.check_tokenizer_fits()?;
        Ok(checkpoint)
    }

    /// From the bytes of a GGUF file.
    pub fn from_gguf_bytes(bytes: Vec<u8>, name: &str) -> Result<Self> {
        Self::from_gguf(GgufFile::parse(Blob::from(bytes), name)?)
    }

    /// A tokenizer with ids past the embedding matrix would index out of bounds.
    fn check_tokenizer_fits(&self) -> Result<()> {
        let tokens = self.tokenizer.vocab_size().max(self.tokenizer.id_bound());
        if tokens > self.config.vocab_size {
            return Err(ModelError::tokenizer(
                self.tokenizer.origin().clone(),
                format!(
                    "the tokenizer has {tokens} tokens (ids up to {}) but the model has only {} embedding rows; \
                     they do not belong together (resize the model with `rosetta vocab extend`, or \
                     pass the model's own tokenizer)",
                    self.tokenizer.id_bound().saturating_sub(1),
                    self.config.vocab_size
                ),
            ));
        }
        Ok(())
    }

    pub fn weights(&self) -> &dyn WeightSource {
        self.source.as_ref()
    }

    /// Builds the model on `device`, quantized tensors kept quantized where the device runs the
    /// quantized kernels ([`Precision::Auto`]).
    pub fn load(&self, device: &Device) -> Result<CausalLm> {
        self.load_with(device, Precision::Auto)
    }

    /// Builds the model on `device` with the weight storage `precision` asks for.
    /// The file pages the load read are released afterwards ([`WeightSource::release_resident`]):
    /// the model holds its own copy of every weight.
    pub fn load_with(&self, device: &Device, precision: Precision) -> Result<CausalLm> {
        let model = CausalLm::from_source_with(&self.config, self.source.as_ref(), device, precision);
        self.source.release_resident();
        model
    }

    /// How many decoder tensors are stored in each type (`Q4_1: 210`, `F32: 61`, ...).
    pub fn storage_summary(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for name in self.source.names() {
            if let Some(ty) = self.source.storage_type(&name) {
                *counts.entry(ty).or_insert(0) += 1;
            }
        }
        counts
    }
}

#[cfg(not(target_family = "wasm"))]
fn is_gguf(path: &std::path::Path) -> Result<bool> {
    use std::io::Read;
    if path.extension().is_some_and(|e| e == "gguf") {
        return Ok(true);
    }
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(|e| ModelError::io(path.display().to_string(), e))?;
    Ok(file.read_exact(&mut magic).is_ok() && &magic == b"GGUF")
}

/// The tokenizer of an HF directory: `tokenizer.json` with its config and chat template.
#[cfg(not(target_family = "wasm"))]
pub fn load_tokenizer_dir(dir: &std::path::Path) -> Result<TextTokenizer> {
    let tokenizer_path = dir.join("tokenizer.json");
    let json = std::fs::read_to_string(&tokenizer_path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ModelError::tokenizer(
            tokenizer_path.display().to_string(),
            "missing; Rosetta needs the fast-tokenizer file tokenizer.json (convert a slow tokenizer \
             with transformers: AutoTokenizer.from_pretrained(dir).save_pretrained(dir))",
        ),
        _ => ModelError::io(tokenizer_path.display().to_string(), e),
    })?;
    let config = std::fs::read_to_string(dir.join("tokenizer_config.json")).ok();
    let template = std::fs::read_to_string(dir.join("chat_template.jinja")).ok();
    TextTokenizer::from_hf_json(&json, config.as_deref(), template, tokenizer_path.display().to_string())
}

/// A tokenizer from a `tokenizer.json` path or a directory that has one.
#[cfg(not(target_family = "wasm"))]
pub fn load_tokenizer_path(path: &std::path::Path) -> Result<TextTokenizer> {
    if path.is_dir() {
        return load_tokenizer_dir(path);
    }
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let json = std::fs::read_to_string(path).map_err(|e| ModelError::io(path.display().to_string(), e))?;
    let config = std::fs::read_to_string(dir.join("tokenizer_config.json")).ok();
    TextTokenizer::from_hf_json(&json, config.as_deref(), None, path.display().to_string())
}
