//! Export to a GGUF file that llama.cpp loads: the inverse of [`crate::weights::gguf_source`].
//!
//! What llama.cpp's `convert_hf_to_gguf.py` does, done here from the loaded model: llama.cpp
//! tensor names; for the `llama` architecture the rows of q and k permuted so each head's rotary
//! halves interleave; `{arch}.*` hyper-parameters; the tokenizer as `tokenizer.ggml.*`
//! (byte-level BPE, see [`crate::tokenizer::gguf::gguf_tokenizer_metadata`]); 2-D weights in the
//! chosen type (Q8_0 rows must be whole 32-value blocks, else F16, as llama.cpp falls back), norms
//! and other 1-D tensors in F32. The file is streamed tensor by tensor and appears atomically.

use std::path::{Path, PathBuf};

use rosetta_kernels::quant::GgmlType;
use rosetta_kernels::quant::blocks::encode;

use crate::config::{Architecture, ModelConfig, RopeScaling};
use crate::error::{ModelError, Result};
use crate::model::CausalLm;
use crate::nn::rotary::RotaryEmbedding;
use crate::tokenizer::TextTokenizer;
use crate::tokenizer::gguf::{GgufSpecialTokens, gguf_tokenizer_metadata};
use crate::weights::gguf::{GgufTensorLayout, GgufValue, write_gguf_stream};
use crate::weights::gguf_source::{gguf_name, unpermuted_order};
use crate::weights::{HostTensor, names};

/// The weight type of the 2-D tensors of a GGUF export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufExportType {
    F32,
    F16,
    Q8_0,
}

impl GgufExportType {
    pub const NAMES: &str = "f32, f16, q8_0";

    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "f32" => Some(Self::F32),
            "f16" => Some(Self::F16),
            "q8_0" => Some(Self::Q8_0),
            _ => None,
        }
    }

    fn ggml(self) -> GgmlType {
        match self {
            Self::F32 => GgmlType::F32,
            Self::F16 => GgmlType::F16,
            Self::Q8_0 => GgmlType::Q8_0,
        }
    }

    /// llama.cpp's `general.file_type` (`LLAMA_FTYPE_*`).
    fn file_type(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q8_0 => 7,
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct GgufExport {
    pub path: PathBuf,
    pub tensors: usize,
    pub bytes: u64,
    /// Tensors written in another type than asked (rows not whole Q8_0 blocks).
    pub fallbacks: Vec<String>,
    /// A caveat for the user (a pre-tokenizer llama.cpp has no name for).
    pub warning: Option<String>,
}

/// Writes `model` and `tokenizer` to `path` as GGUF v3. An existing file is replaced only with
/// `overwrite`.
pub fn export_gguf(
    model: &CausalLm,
    tokenizer: &TextTokenizer,
    path: &Path,
    ty: GgufExportType,
    name: &str,
    overwrite: bool,
) -> Result<GgufExport> {
    if path.exists() && !overwrite {
        return Err(ModelError::invalid(format!("{} exists; pass --overwrite to replace it", path.display())));
    }
    let config = model.config();
    let arch = match config.architecture {
        // llama.cpp runs Mistral as `llama`.
        Architecture::Llama | Architecture::Mistral => "llama",
        Architecture::Qwen2 => "qwen2",
    };
    let mut kv = hyper_parameters(config, arch, name, ty);
    let special = GgufSpecialTokens { bos: config.bos_token_id, eos: config.eos_token_ids.first().copied(), pad: config.pad_token_id };
    let (tokenizer_kv, warning) = gguf_tokenizer_metadata(tokenizer, config.vocab_size, &special)?;
    kv.extend(tokenizer_kv);

    // Tensors in llama.cpp's order and names; their bytes are made when written.
    let mut tensors: Vec<(String, HostTensor)> = Vec::new();
    for (hf, t) in model.to_hf_tensors()? {
        if config.tie_word_embeddings && hf == names::LM_HEAD {
            continue;
        }
        let gguf = gguf_name(&hf).ok_or_else(|| ModelError::invalid(format!("tensor `{hf}` has no GGUF name")))?;
        let permuted = match (arch, hf.contains("self_attn.q_proj."), hf.contains("self_attn.k_proj.")) {
            ("llama", true, _) => Some(config.num_attention_heads),
            ("llama", _, true) => Some(config.num_key_value_heads),
            _ => None,
        };
        tensors.push((
            gguf,
            match permuted {
                Some(heads) => permute_rows(t, heads),
                None => t,
            },
        ));
    }
    if let Some(divisors) = rope_divisors(config) {
        tensors.push(("rope_freqs.weight".to_string(), HostTensor::new(vec![divisors.len()], divisors)));
    }

    let mut fallbacks = Vec::new();
    let stored: Vec<GgmlType> = tensors
        .iter()
        .map(|(name, t)| match (t.shape.as_slice(), ty) {
            ([_, cols], GgufExportType::Q8_0) if !cols.is_multiple_of(32) => {
                fallbacks.push(name.clone());
                GgmlType::F16
            }
            ([_, _], _) => ty.ggml(),
            _ => GgmlType::F32,
        })
        .collect();
    let layout: Vec<GgufTensorLayout> = tensors
        .iter()
        .zip(&stored)
        .map(|((name, t), stored)| GgufTensorLayout {
            name: name.clone(),
            shape: t.shape.clone(),
            ty: stored.id(),
            bytes: t.data.len() / stored.block_size() * stored.type_size(),
        })
        .collect();
    let kv_refs: Vec<(&str, GgufValue)> = kv.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    crate::atomic::write_file_with(path, |out| {
        write_gguf_stream(out, &kv_refs, &layout, |i| {
            encode(stored[i], &tensors[i].1.data).ok_or_else(|| std::io::Error::other(format!("{:?} is not written", stored[i])))
        })
    })?;
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    Ok(GgufExport { path: path.to_path_buf(), tensors: layout.len(), bytes, fallbacks, warning })
}

/// `general.*` and `{arch}.*` metadata, as llama.cpp's converter writes them.
fn hyper_parameters(config: &ModelConfig, arch: &str, name: &str, ty: GgufExportType) -> Vec<(String, GgufValue)> {
    let u = |v: usize| GgufValue::U32(v as u32);
    let a = |key: &str| format!("{arch}.{key}");
    let mut kv = vec![
        ("general.architecture".to_string(), GgufValue::String(arch.to_string())),
        ("general.name".to_string(), GgufValue::String(name.to_string())),
        ("general.file_type".to_string(), GgufValue::U32(ty.file_type())),
        ("general.quantization_version".to_string(), GgufValue::U32(2)),
        (a("block_count"), u(config.num_hidden_layers)),
        (a("context_length"), u(config.max_position_embeddings)),
        (a("embedding_length"), u(config.hidden_size)),
        (a("feed_forward_length"), u(config.intermediate_size)),
        (a("attention.head_count"), u(config.num_attention_heads)),
        (a("attention.head_count_kv"), u(config.num_key_value_heads)),
        (a("attention.layer_norm_rms_epsilon"), GgufValue::F32(config.rms_norm_eps as f32)),
        (a("rope.freq_base"), GgufValue::F32(config.rope_theta as f32)),
        (a("rope.dimension_count"), u(config.head_dim)),
        (a("vocab_size"), u(config.vocab_size)),
    ];
    if config.head_dim * config.num_attention_heads != config.hidden_size {
        kv.push((a("attention.key_length"), u(config.head_dim)));
        kv.push((a("attention.value_length"), u(config.head_dim)));
    }
    if let Some(window) = config.sliding_window {
        // llama.cpp's `llama` graph has no sliding window; Rosetta reads it back for Mistral.
        kv.push((a("attention.sliding_window"), u(window)));
    }
    if let Some(RopeScaling::Linear { factor }) = &config.rope_scaling {
        kv.push((a("rope.scaling.type"), GgufValue::String("linear".into())));
        kv.push((a("rope.scaling.factor"), GgufValue::F32(*factor as f32)));
    }
    kv
}

/// llama.cpp's form of frequency-dependent RoPE scaling: one divisor per rotary pair
/// (`rope_freqs.weight`), the default inverse frequency over the scaled one.
fn rope_divisors(config: &ModelConfig) -> Option<Vec<f32>> {
    if !matches!(config.rope_scaling, Some(RopeScaling::Llama3 { .. } | RopeScaling::Factors { .. })) {
        return None;
    }
    let scaled = RotaryEmbedding::new(config);
    let default = RotaryEmbedding::new(&ModelConfig { rope_scaling: None, ..config.clone() });
    Some(default.inv_freq().iter().zip(scaled.inv_freq()).map(|(d, s)| d / s).collect())
}

/// HF q/k rows into llama.cpp's interleaved rotary order (what the reader undoes).
fn permute_rows(t: HostTensor, n_head: usize) -> HostTensor {
    let cols: usize = t.shape[1..].iter().product();
    let mut out = vec![0f32; t.data.len()];
    for (hf_row, gguf_row) in unpermuted_order(t.shape[0], n_head).into_iter().enumerate() {
        out[gguf_row * cols..(gguf_row + 1) * cols].copy_from_slice(&t.data[hf_row * cols..(hf_row + 1) * cols]);
    }
    HostTensor::new(t.shape, out)
}
