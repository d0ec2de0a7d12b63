//! Export to an HF model directory that `transformers.AutoModelForCausalLM` and
//! `AutoTokenizer` load: `model.safetensors`, `config.json`, `generation_config.json`,
//! `tokenizer.json`, `tokenizer_config.json`, and `rosetta.json` for Rosetta's own additions.
//! The directory appears complete or not at all ([`crate::atomic::StagedDir`]).

use std::path::{Path, PathBuf};

use half::{bf16, f16};
use safetensors::{Dtype, tensor::TensorView};
use serde_json::{Value, json};

use crate::atomic::StagedDir;
use crate::checkpoint::ROSETTA_EXTRAS_FILE;
use crate::error::{ModelError, Result};
use crate::model::CausalLm;
use crate::tokenizer::TextTokenizer;
use crate::weights::{names, sparse};

/// The dtype weights are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportDtype {
    #[default]
    F32,
    F16,
    Bf16,
}

impl ExportDtype {
    fn torch_name(self) -> &'static str {
        match self {
            ExportDtype::F32 => "float32",
            ExportDtype::F16 => "float16",
            ExportDtype::Bf16 => "bfloat16",
        }
    }

    fn encode(self, values: &[f32]) -> (Dtype, Vec<u8>) {
        match self {
            ExportDtype::F32 => (Dtype::F32, values.iter().flat_map(|v| v.to_le_bytes()).collect()),
            ExportDtype::F16 => (Dtype::F16, values.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect()),
            ExportDtype::Bf16 => (Dtype::BF16, values.iter().flat_map(|v| bf16::from_f32(*v).to_le_bytes()).collect()),
        }
    }
}

impl std::str::FromStr for ExportDtype {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" | "float32" => Ok(ExportDtype::F32),
            "f16" | "float16" => Ok(ExportDtype::F16),
            "bf16" | "bfloat16" => Ok(ExportDtype::Bf16),
            other => Err(ModelError::invalid(format!("unknown dtype `{other}` (use f32, f16 or bf16)"))),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    pub dtype: ExportDtype,
    pub overwrite: bool,
    /// Written as `rosetta.json` when present.
    pub extras: Option<Value>,
    /// Store 2-D weights with at least this fraction of zeros in Rosetta's compressed form
    /// (`weights::sparse`): much smaller, read back exactly by Rosetta, not by transformers.
    pub sparse_from: Option<f64>,
}

/// A safetensors file as PyTorch tools write it (`format: pt` metadata, plus `extra`) from
/// `(name, dtype, shape, bytes)` tensors.
pub fn serialize_safetensors(tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)], extra: Option<(String, String)>) -> Result<Vec<u8>> {
    let views = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| ModelError::invalid(format!("tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut metadata = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    metadata.extend(extra);
    safetensors::serialize(views, Some(metadata)).map_err(|e| ModelError::invalid(format!("cannot serialise weights: {e}")))
}

/// Writes `model` and `tokenizer` to `dir` as an HF checkpoint.
pub fn export_hf(model: &CausalLm, tokenizer: &TextTokenizer, dir: &Path, options: &ExportOptions) -> Result<PathBuf> {
    let config = model.config();
    let staged = StagedDir::new(dir, options.overwrite)?;

    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut compressed: std::collections::BTreeMap<String, [usize; 2]> = Default::default();
    for (name, t) in model.to_hf_tensors()? {
        if config.tie_word_embeddings && name == names::LM_HEAD {
            continue;
        }
        let zero_fraction = t.data.iter().filter(|v| **v == 0.0).count() as f64 / t.data.len().max(1) as f64;
        match (options.sparse_from, t.shape.as_slice()) {
            (Some(threshold), &[rows, cols]) if zero_fraction >= threshold && zero_fraction > 0.0 => {
                let (nonzero, keep) = sparse::compress(&t.data, rows, cols);
                let (dtype, bytes) = options.dtype.encode(&nonzero);
                tensors.push((format!("{name}{}", sparse::VALUES_SUFFIX), dtype, vec![nonzero.len()], bytes));
                tensors.push((format!("{name}{}", sparse::KEEP_SUFFIX), Dtype::U8, vec![rows, cols.div_ceil(8)], keep));
                compressed.insert(name, [rows, cols]);
            }
            _ => {
                let (dtype, bytes) = options.dtype.encode(&t.data);
                tensors.push((name, dtype, t.shape, bytes));
            }
        }
    }
    let extra =
        (!compressed.is_empty()).then(|| (sparse::SPARSE_METADATA_KEY.to_string(), serde_json::to_string(&compressed).unwrap_or_default()));
    let bytes = serialize_safetensors(&tensors, extra)?;
    staged.write("model.safetensors", &bytes)?;

    let pretty = |v: &Value| serde_json::to_vec_pretty(v).unwrap_or_default();
    staged.write("config.json", &pretty(&config.to_hf_json(options.dtype.torch_name())?))?;
    let mut generation = json!({"do_sample": false});
    if let Some(bos) = config.bos_token_id {
        generation["bos_token_id"] = json!(bos);
    }
    if !config.eos_token_ids.is_empty() {
        generation["eos_token_id"] = json!(config.eos_token_ids);
    }
    if let Some(pad) = config.pad_token_id {
        generation["pad_token_id"] = json!(pad);
    }
    staged.write("generation_config.json", &pretty(&generation))?;
    staged.write("tokenizer.json", tokenizer.to_json()?.as_bytes())?;
    staged.write("tokenizer_config.json", &pretty(&tokenizer.tokenizer_config(config.max_position_embeddings)))?;
    if let Some(extras) = &options.extras {
        staged.write(ROSETTA_EXTRAS_FILE, &pretty(extras))?;
    }
    staged.commit()
}
