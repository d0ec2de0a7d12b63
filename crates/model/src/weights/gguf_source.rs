//! A GGUF file seen as an HF checkpoint: its metadata becomes a [`ModelConfig`], its tensors get
//! HF names and layout, and llama.cpp's conversion transforms are undone.
//!
//! What llama.cpp's `convert_hf_to_gguf.py` does that we undo:
//! - renames (`blk.N.attn_q.weight` ← `model.layers.N.self_attn.q_proj.weight`, ...);
//! - for the `llama` architecture, permutes the rows of q and k (weights and biases) so that
//!   rotary pairs are interleaved `(x0, x1), (x2, x3), ...` instead of HF's halves
//!   `(x0, x_{d/2}), ...`; we apply the inverse (transformers' `_reverse_permute_weights`);
//! - quantises; we dequantise to f32 ([`super::dequant`]) or keep the blocks packed for the
//!   quantized kernels ([`WeightSource::read_packed`]).

use rosetta_kernels::quant::PackedMatrix;

use super::gguf::{GgufFile, GgufTensorInfo, GgufValue};
use super::{HostTensor, WeightSource, names};
use crate::config::{Architecture, ModelConfig, RopeScaling};
use crate::error::{ModelError, Origin, Result};

pub struct GgufSource {
    file: GgufFile,
    /// Whether q/k rows are in llama.cpp's interleaved order.
    permuted_qk: bool,
    num_heads: usize,
    num_kv_heads: usize,
    num_layers: usize,
}

/// HF name → GGUF name for one decoder parameter, or `None` for names GGUF does not have.
pub(crate) fn gguf_name(hf: &str) -> Option<String> {
    match hf {
        names::EMBED => return Some("token_embd.weight".into()),
        names::FINAL_NORM => return Some("output_norm.weight".into()),
        names::LM_HEAD => return Some("output.weight".into()),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, param) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let mapped = match param {
        "input_layernorm.weight" => "attn_norm.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "self_attn.q_proj.bias" => "attn_q.bias",
        "self_attn.k_proj.bias" => "attn_k.bias",
        "self_attn.v_proj.bias" => "attn_v.bias",
        "self_attn.o_proj.bias" => "attn_output.bias",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        "mlp.gate_proj.bias" => "ffn_gate.bias",
        "mlp.up_proj.bias" => "ffn_up.bias",
        "mlp.down_proj.bias" => "ffn_down.bias",
        _ => return None,
    };
    Some(format!("blk.{layer}.{mapped}"))
}

/// For each HF row of a q/k projection, the llama.cpp row that holds it: llama.cpp interleaves
/// the two rotary halves of every head (`order[hf_row] = gguf_row`; reading gathers by it,
/// [`crate::gguf_export`] scatters by it).
pub(crate) fn unpermuted_order(rows: usize, n_head: usize) -> Vec<usize> {
    let head_dim = rows / n_head;
    let half = head_dim / 2;
    let mut order = vec![0; rows];
    for h in 0..n_head {
        for i in 0..half {
            for s in 0..2 {
                order[h * head_dim + s * half + i] = h * head_dim + i * 2 + s;
            }
        }
    }
    order
}

/// Rows of a q/k projection from llama.cpp's interleaved rotary order back to HF's halves.
fn unpermute_rows(t: HostTensor, n_head: usize) -> HostTensor {
    let cols: usize = t.shape[1..].iter().product();
    let mut out = Vec::with_capacity(t.data.len());
    for src in unpermuted_order(t.shape[0], n_head) {
        out.extend_from_slice(&t.data[src * cols..(src + 1) * cols]);
    }
    HostTensor::new(t.shape, out)
}

impl GgufSource {
    pub fn new(file: GgufFile, config: &ModelConfig) -> Self {
        let permuted_qk = matches!(file.get("general.architecture").and_then(GgufValue::as_str), Some("llama") | Some("mistral"));
        GgufSource {
            file,
            permuted_qk,
            num_heads: config.num_attention_heads,
            num_kv_heads: config.num_key_value_heads,
            num_layers: config.num_hidden_layers,
        }
    }

    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    pub fn into_file(self) -> GgufFile {
        self.file
    }

    /// All HF names that could exist for this model (whether or not the file has them).
    fn candidate_names(&self) -> Vec<String> {
        let mut all = vec![names::EMBED.to_string(), names::FINAL_NORM.to_string(), names::LM_HEAD.to_string()];
        for i in 0..self.num_layers {
            for p in [
                "input_layernorm.weight",
                "post_attention_layernorm.weight",
                "self_attn.q_proj.weight",
                "self_attn.k_proj.weight",
                "self_attn.v_proj.weight",
                "self_attn.o_proj.weight",
                "self_attn.q_proj.bias",
                "self_attn.k_proj.bias",
                "self_attn.v_proj.bias",
                "self_attn.o_proj.bias",
                "mlp.gate_proj.weight",
                "mlp.up_proj.weight",
                "mlp.down_proj.weight",
                "mlp.gate_proj.bias",
                "mlp.up_proj.bias",
                "mlp.down_proj.bias",
            ] {
                all.push(names::layer(i, p));
            }
        }
        all
    }
}

impl WeightSource for GgufSource {
    fn origin(&self) -> &Origin {
        &self.file.origin
    }

    fn names(&self) -> Vec<String> {
        self.candidate_names().into_iter().filter(|n| gguf_name(n).is_some_and(|g| self.file.tensor_info(&g).is_some())).collect()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.file.tensor_info(&gguf_name(name)?).map(|i| i.shape())
    }

    fn storage_type(&self, name: &str) -> Option<String> {
        let info = self.file.tensor_info(&gguf_name(name)?)?;
        Some(self.file.tensor_type_name(info))
    }

    fn read(&self, name: &str) -> Result<HostTensor> {
        let info = self.info(name)?;
        let tensor = HostTensor::new(info.shape(), self.file.read_f32(info)?);
        Ok(match self.permuted_heads(name) {
            Some(n_head) => unpermute_rows(tensor, n_head),
            None => tensor,
        })
    }

    fn read_packed(&self, name: &str) -> Result<Option<PackedMatrix>> {
        let info = self.info(name)?;
        let Some(packed) = self.file.read_packed(info)? else { return Ok(None) };
        match self.permuted_heads(name) {
            Some(n_head) => packed
                .reorder_rows(&unpermuted_order(packed.rows(), n_head))
                .map(Some)
                .map_err(|e| ModelError::gguf(self.file.origin.clone(), format!("tensor `{}`: {e}", info.name))),
            None => Ok(Some(packed)),
        }
    }

    fn release_resident(&self) {
        self.file.release_resident();
    }
}

impl GgufSource {
    fn info(&self, name: &str) -> Result<&GgufTensorInfo> {
        let missing = || ModelError::MissingTensor {
            origin: self.file.origin.clone(),
            tensor: gguf_name(name).unwrap_or_else(|| name.to_string()),
            architecture: self.file.get("general.architecture").and_then(GgufValue::as_str).unwrap_or("?").to_string(),
        };
        let gguf = gguf_name(name).ok_or_else(missing)?;
        self.file.tensor_info(&gguf).ok_or_else(missing)
    }

    /// The head count whose rotary halves llama.cpp interleaved in this tensor's rows, if any.
    fn permuted_heads(&self, name: &str) -> Option<usize> {
        if !self.permuted_qk {
            return None;
        }
        if name.contains("self_attn.q_proj.") {
            Some(self.num_heads)
        } else if name.contains("self_attn.k_proj.") {
            Some(self.num_kv_heads)
        } else {
            None
        }
    }
}

/// Reads the decoder's config from GGUF metadata (llama.cpp key names, `{arch}.` prefixed).
pub fn model_config(file: &GgufFile) -> Result<ModelConfig> {
    let origin = &file.origin;
    let arch_name = file
        .get("general.architecture")
        .and_then(GgufValue::as_str)
        .ok_or_else(|| ModelError::gguf(origin.clone(), "no `general.architecture` in the metadata"))?;
    let model_name = file.get("general.name").and_then(GgufValue::as_str).unwrap_or("").to_lowercase();
    let architecture = match arch_name {
        // llama.cpp converts Mistral to the llama architecture; transformers tells them apart by name.
        "llama" if model_name.contains("mistral") => Architecture::Mistral,
        "llama" => Architecture::Llama,
        "qwen2" => Architecture::Qwen2,
        other => {
            return Err(ModelError::UnknownArchitecture { origin: origin.clone(), architecture: other.to_string() });
        }
    };
    let key = |k: &str| format!("{arch_name}.{k}");
    let get_usize = |k: &str| -> Result<usize> {
        file.get(&key(k))
            .and_then(GgufValue::as_u64)
            // Too large for this platform: kept too large, so the config's bounds refuse it by name.
            .map(|v| usize::try_from(v).unwrap_or(usize::MAX))
            .ok_or_else(|| ModelError::gguf(origin.clone(), format!("missing or non-integer `{}`", key(k))))
    };
    let opt_usize = |k: &str| file.get(&key(k)).and_then(GgufValue::as_u64).map(|v| usize::try_from(v).unwrap_or(usize::MAX));
    let opt_f64 = |k: &str| file.get(&key(k)).and_then(GgufValue::as_f64);

    let hidden_size = get_usize("embedding_length")?;
    let num_attention_heads = get_usize("attention.head_count")?;
    let num_key_value_heads = opt_usize("attention.head_count_kv").unwrap_or(num_attention_heads);
    let head_dim =
        opt_usize("attention.key_length").or_else(|| opt_usize("rope.dimension_count")).unwrap_or(hidden_size / num_attention_heads.max(1));
    let vocab_size = match opt_usize("vocab_size") {
        Some(v) => v,
        None => file
            .get("tokenizer.ggml.tokens")
            .and_then(GgufValue::as_array)
            .map(|t| t.len())
            .or_else(|| file.tensor_info("token_embd.weight").map(|i| i.shape()[0]))
            .ok_or_else(|| ModelError::gguf(origin.clone(), "cannot tell the vocabulary size"))?,
    };

    let rope_scaling = if let Some(info) = file.tensor_info("rope_freqs.weight") {
        Some(RopeScaling::Factors { divisors: file.read_f32(info)? })
    } else {
        match file.get(&key("rope.scaling.type")).and_then(GgufValue::as_str) {
            None | Some("none") => None,
            Some("linear") => Some(RopeScaling::Linear { factor: opt_f64("rope.scaling.factor").unwrap_or(1.0) }),
            Some(other) => {
                return Err(ModelError::gguf(
                    origin.clone(),
                    format!("rope scaling `{other}` is not supported (supported: none, linear, llama3 via rope_freqs)"),
                ));
            }
        }
    };

    let token = |k: &str| file.get(k).and_then(GgufValue::as_u64).map(|v| v as u32);
    let has = |name: &str| file.tensor_info(name).is_some();
    let qkv_bias = has("blk.0.attn_q.bias");
    let config = ModelConfig {
        architecture,
        vocab_size,
        hidden_size,
        intermediate_size: get_usize("feed_forward_length")?,
        num_hidden_layers: get_usize("block_count")?,
        num_attention_heads,
        num_key_value_heads,
        head_dim,
        rms_norm_eps: opt_f64("attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
        rope_theta: opt_f64("rope.freq_base").unwrap_or(10_000.0),
        rope_scaling,
        max_position_embeddings: opt_usize("context_length").unwrap_or(2048),
        // llama.cpp writes `output.weight` only when the head is not the embedding matrix.
        tie_word_embeddings: !has("output.weight"),
        qkv_bias,
        o_bias: has("blk.0.attn_output.bias"),
        mlp_bias: has("blk.0.ffn_down.bias"),
        sliding_window: match architecture {
            Architecture::Mistral => opt_usize("attention.sliding_window"),
            _ => None,
        },
        bos_token_id: token("tokenizer.ggml.bos_token_id"),
        eos_token_ids: token("tokenizer.ggml.eos_token_id").into_iter().collect(),
        pad_token_id: token("tokenizer.ggml.padding_token_id"),
        torch_dtype: Some("gguf".into()),
    };
    config.validate(origin)?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // llama.cpp: w.reshape(n_head, 2, hd/2, cols).swapaxes(1, 2)
        let (n_head, head_dim, cols) = (2, 4, 3);
        let hf: Vec<f32> = (0..n_head * head_dim * cols).map(|v| v as f32).collect();
        let mut permuted = vec![0f32; hf.len()];
        for h in 0..n_head {
            for s in 0..2 {
                for i in 0..head_dim / 2 {
                    let src_row = h * head_dim + s * (head_dim / 2) + i;
                    let dst_row = h * head_dim + i * 2 + s;
                    permuted[dst_row * cols..(dst_row + 1) * cols].copy_from_slice(&hf[src_row * cols..(src_row + 1) * cols]);
                }
            }
        }
        let back = unpermute_rows(HostTensor::new(vec![n_head * head_dim, cols], permuted), n_head);
        assert_eq!(back.data, hf);
    }

    #[test]
    fn names_map_both_ways_for_every_layer_param() {
        assert_eq!(gguf_name("model.layers.7.mlp.down_proj.weight").as_deref(), Some("blk.7.ffn_down.weight"));
        assert_eq!(gguf_name(names::EMBED).as_deref(), Some("token_embd.weight"));
        assert_eq!(gguf_name("model.layers.x.mlp.down_proj.weight"), None);
    }
}
