//! The architecture description of a LLaMA-family decoder, read from HF `config.json` or from
//! GGUF metadata, and written back as an HF `config.json` that transformers loads.
//!
//! One struct covers the families Rosetta runs; what differs between them is data:
//! - `llama` (SmolLM/SmolLM2, TinyLlama, Llama 2/3): optional `attention_bias`/`mlp_bias`,
//!   optional `head_dim`, llama3/linear rope scaling.
//! - `mistral`: llama plus an optional sliding attention window.
//! - `qwen2`: bias on q/k/v (never on o), otherwise llama.

use serde_json::{Map, Value, json};

use crate::error::{ModelError, Origin, Result};

/// The model families whose HF implementation Rosetta matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    Llama,
    Mistral,
    Qwen2,
}

impl Architecture {
    pub fn model_type(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Mistral => "mistral",
            Architecture::Qwen2 => "qwen2",
        }
    }

    pub fn hf_class(self) -> &'static str {
        match self {
            Architecture::Llama => "LlamaForCausalLM",
            Architecture::Mistral => "MistralForCausalLM",
            Architecture::Qwen2 => "Qwen2ForCausalLM",
        }
    }

    fn from_model_type(model_type: &str, origin: &Origin) -> Result<Self> {
        match model_type {
            "llama" => Ok(Architecture::Llama),
            "mistral" => Ok(Architecture::Mistral),
            "qwen2" => Ok(Architecture::Qwen2),
            other => Err(ModelError::UnknownArchitecture { origin: origin.clone(), architecture: other.to_string() }),
        }
    }
}

/// How rotary frequencies are rescaled for long context.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "rope_type", rename_all = "lowercase")]
pub enum RopeScaling {
    /// Positions divided by `factor` (HF `rope_type: linear`).
    Linear { factor: f64 },
    /// Llama 3.1's frequency-dependent scaling (HF `rope_type: llama3`).
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original_max_position_embeddings: usize },
    /// Per-frequency divisors stored as the `rope_freqs.weight` tensor of a GGUF (llama.cpp's
    /// form of llama3 scaling). Not expressible in an HF config.
    Factors { divisors: Vec<f32> },
}

/// Everything needed to build the decoder. Field names follow HF `config.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Bias on the q, k and v projections (Qwen2 always; llama with `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on the output projection (llama with `attention_bias`; never Qwen2).
    pub o_bias: bool,
    pub mlp_bias: bool,
    /// Attention window of Mistral v0.1; `None` attends to the whole prefix.
    pub sliding_window: Option<usize>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
    /// The dtype the checkpoint was stored in (`float32`, `bfloat16`, ...); informational.
    pub torch_dtype: Option<String>,
}

/// Bounds [`ModelConfig::validate`] holds every config to (see there). With them every size the
/// loader computes fits in u64, and the per-layer shapes in wasm32's usize.
pub const MAX_VOCAB: usize = 1 << 22;
pub const MAX_WIDTH: usize = 1 << 18;
pub const MAX_LAYERS: usize = 1024;
pub const MAX_HEADS: usize = 1024;
pub const MAX_HEAD_DIM: usize = 1024;
pub const MAX_POSITIONS: usize = 1 << 24;

impl ModelConfig {
    /// Checks the invariants the layers rely on, so a bad config fails here and not in a matmul.
    pub fn validate(&self, origin: &Origin) -> Result<()> {
        let fail = |reason: String| Err(ModelError::config(origin.clone(), reason));
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
        ];
        for (name, value) in positive {
            if value == 0 {
                return fail(format!("`{name}` must be positive"));
            }
        }
        // Upper bounds, checked before anything is sized from them: a config (or GGUF header) of
        // a few bytes must not make the loader reserve memory or loop for a model no file holds.
        // Each bound is far above the largest published LLaMA-family model.
        for (name, value, max) in [
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("hidden_size", self.hidden_size, MAX_WIDTH),
            ("intermediate_size", self.intermediate_size, MAX_WIDTH),
            ("num_hidden_layers", self.num_hidden_layers, MAX_LAYERS),
            ("num_attention_heads", self.num_attention_heads, MAX_HEADS),
            ("head_dim", self.head_dim, MAX_HEAD_DIM),
            ("max_position_embeddings", self.max_position_embeddings, MAX_POSITIONS),
        ] {
            if value > max {
                return fail(format!("`{name}` = {value} is beyond any model Rosetta can load (at most {max}); the config is corrupt"));
            }
        }
        if !self.num_attention_heads.is_multiple_of(self.num_key_value_heads) {
            return fail(format!(
                "num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if self.sliding_window == Some(0) {
            return fail("`sliding_window` must be positive (0 would let no position see any other)".into());
        }
        if !self.head_dim.is_multiple_of(2) {
            return fail(format!("head_dim ({}) must be even for rotary embeddings", self.head_dim));
        }
        if !(self.rms_norm_eps > 0.0) || !(self.rope_theta > 0.0) {
            return fail("rms_norm_eps and rope_theta must be positive".into());
        }
        if let Some(RopeScaling::Factors { divisors }) = &self.rope_scaling
            && divisors.len() != self.head_dim / 2
        {
            return fail(format!("rope_freqs has {} entries, expected head_dim/2 = {}", divisors.len(), self.head_dim / 2));
        }
        Ok(())
    }

    pub fn num_kv_groups(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    /// Parses an HF `config.json`. Understands both the legacy `rope_theta`/`rope_scaling`
    /// keys and transformers 5's `rope_parameters`.
    pub fn from_hf_json(text: &str, origin: impl Into<Origin>) -> Result<Self> {
        let origin = origin.into();
        let value: Value = serde_json::from_str(text).map_err(|e| ModelError::config(origin.clone(), format!("not valid JSON: {e}")))?;
        let obj = value.as_object().ok_or_else(|| ModelError::config(origin.clone(), "expected a JSON object"))?;
        // Multimodal wrappers keep the decoder under `text_config`.
        let obj = match obj.get("text_config").and_then(Value::as_object) {
            Some(text) if !obj.contains_key("hidden_size") => text,
            _ => obj,
        };
        let reader = JsonFields { obj, origin: &origin };
        let model_type = reader.string("model_type")?;
        let architecture = Architecture::from_model_type(&model_type, &origin)?;

        let hidden_size = reader.usize("hidden_size")?;
        let num_attention_heads = reader.usize("num_attention_heads")?;
        let num_key_value_heads = reader.opt_usize("num_key_value_heads")?.unwrap_or(num_attention_heads);
        if num_attention_heads == 0 {
            return Err(ModelError::config(origin, "`num_attention_heads` must be positive"));
        }
        let head_dim = reader.opt_usize("head_dim")?.unwrap_or(hidden_size / num_attention_heads);

        let rope_parameters = obj.get("rope_parameters").and_then(Value::as_object);
        let rope_theta = rope_parameters
            .and_then(|p| p.get("rope_theta"))
            .or_else(|| obj.get("rope_theta"))
            .map(|v| v.as_f64().ok_or_else(|| ModelError::config(origin.clone(), "`rope_theta` must be a number")))
            .transpose()?
            .unwrap_or(10_000.0);
        let scaling_obj = match rope_parameters {
            Some(p) => Some(p),
            None => obj.get("rope_scaling").and_then(Value::as_object),
        };
        let rope_scaling = match scaling_obj {
            Some(s) => parse_rope_scaling(s, &origin)?,
            None => None,
        };

        let attention_bias = reader.opt_bool("attention_bias")?.unwrap_or(false);
        let (qkv_bias, o_bias) = match architecture {
            Architecture::Qwen2 => (true, false),
            _ => (attention_bias, attention_bias),
        };
        let sliding_window = match architecture {
            Architecture::Mistral => reader.opt_usize("sliding_window")?,
            Architecture::Qwen2 => {
                if reader.opt_bool("use_sliding_window")?.unwrap_or(false) {
                    return Err(ModelError::config(
                        origin,
                        "qwen2 with `use_sliding_window: true` (per-layer windows) is not supported; \
                         set it to false to attend over the full context",
                    ));
                }
                None
            }
            Architecture::Llama => None,
        };

        let config = ModelConfig {
            architecture,
            vocab_size: reader.usize("vocab_size")?,
            hidden_size,
            intermediate_size: reader.usize("intermediate_size")?,
            num_hidden_layers: reader.usize("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: reader.opt_f64("rms_norm_eps")?.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            max_position_embeddings: reader.opt_usize("max_position_embeddings")?.unwrap_or(2048),
            tie_word_embeddings: reader.opt_bool("tie_word_embeddings")?.unwrap_or(false),
            qkv_bias,
            o_bias,
            mlp_bias: reader.opt_bool("mlp_bias")?.unwrap_or(false),
            sliding_window,
            bos_token_id: reader.opt_token("bos_token_id")?.first().copied(),
            eos_token_ids: reader.opt_token("eos_token_id")?,
            pad_token_id: reader.opt_token("pad_token_id")?.first().copied(),
            torch_dtype: obj.get("torch_dtype").or_else(|| obj.get("dtype")).and_then(Value::as_str).map(str::to_string),
        };
        config.validate(&origin)?;
        Ok(config)
    }

    /// The HF `config.json` for this model, loadable by `transformers.AutoConfig`.
    /// `torch_dtype` is the dtype the weights are written in.
    pub fn to_hf_json(&self, torch_dtype: &str) -> Result<Value> {
        let mut obj = Map::new();
        obj.insert("architectures".into(), json!([self.architecture.hf_class()]));
        obj.insert("model_type".into(), json!(self.architecture.model_type()));
        obj.insert("vocab_size".into(), json!(self.vocab_size));
        obj.insert("hidden_size".into(), json!(self.hidden_size));
        obj.insert("intermediate_size".into(), json!(self.intermediate_size));
        obj.insert("num_hidden_layers".into(), json!(self.num_hidden_layers));
        obj.insert("num_attention_heads".into(), json!(self.num_attention_heads));
        obj.insert("num_key_value_heads".into(), json!(self.num_key_value_heads));
        obj.insert("head_dim".into(), json!(self.head_dim));
        obj.insert("hidden_act".into(), json!("silu"));
        obj.insert("rms_norm_eps".into(), json!(self.rms_norm_eps));
        obj.insert("max_position_embeddings".into(), json!(self.max_position_embeddings));
        obj.insert("tie_word_embeddings".into(), json!(self.tie_word_embeddings));
        obj.insert("rope_theta".into(), json!(self.rope_theta));
        let scaling = match &self.rope_scaling {
            None => Value::Null,
            Some(RopeScaling::Linear { factor }) => json!({"rope_type": "linear", "factor": factor}),
            Some(RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings }) => json!({
                "rope_type": "llama3",
                "factor": factor,
                "low_freq_factor": low_freq_factor,
                "high_freq_factor": high_freq_factor,
                "original_max_position_embeddings": original_max_position_embeddings,
            }),
            Some(RopeScaling::Factors { .. }) => {
                return Err(ModelError::invalid(
                    "this model's rope scaling came as a GGUF `rope_freqs` tensor, which an HF \
                     config.json cannot express; export is not possible for it",
                ));
            }
        };
        obj.insert("rope_scaling".into(), scaling);
        match self.architecture {
            Architecture::Qwen2 => {
                obj.insert("use_sliding_window".into(), json!(false));
            }
            Architecture::Mistral => {
                obj.insert("sliding_window".into(), json!(self.sliding_window));
            }
            Architecture::Llama => {
                obj.insert("attention_bias".into(), json!(self.qkv_bias));
                obj.insert("mlp_bias".into(), json!(self.mlp_bias));
            }
        }
        if let Some(bos) = self.bos_token_id {
            obj.insert("bos_token_id".into(), json!(bos));
        }
        match self.eos_token_ids.as_slice() {
            [] => {}
            [one] => {
                obj.insert("eos_token_id".into(), json!(one));
            }
            many => {
                obj.insert("eos_token_id".into(), json!(many));
            }
        }
        if let Some(pad) = self.pad_token_id {
            obj.insert("pad_token_id".into(), json!(pad));
        }
        obj.insert("torch_dtype".into(), json!(torch_dtype));
        obj.insert("attention_dropout".into(), json!(0.0));
        obj.insert("initializer_range".into(), json!(0.02));
        obj.insert("use_cache".into(), json!(true));
        Ok(Value::Object(obj))
    }

    /// Parameter count of the decoder with this config (tied head counted once). In u64: a 7B
    /// model's count does not fit wasm32's usize.
    pub fn num_parameters(&self) -> u64 {
        let [d, inter, heads, kv_heads, head_dim, vocab, layers] = [
            self.hidden_size,
            self.intermediate_size,
            self.num_attention_heads,
            self.num_key_value_heads,
            self.head_dim,
            self.vocab_size,
            self.num_hidden_layers,
        ]
        .map(|v| v as u64);
        let kv = kv_heads * head_dim;
        let q = heads * head_dim;

        let mut per_layer = d * q + 2 * d * kv + q * d + 3 * d * inter + 2 * d;
        if self.qkv_bias {
            per_layer += q + 2 * kv;
        }
        if self.o_bias {
            per_layer += d;
        }
        if self.mlp_bias {
            per_layer += 2 * inter + d;
        }
        let embed = vocab * d;
        let head = if self.tie_word_embeddings { 0 } else { embed };
        embed + head + layers * per_layer + d
    }
}

fn parse_rope_scaling(s: &Map<String, Value>, origin: &Origin) -> Result<Option<RopeScaling>> {
    let kind = s.get("rope_type").or_else(|| s.get("type")).and_then(Value::as_str).unwrap_or("default");
    let reader = JsonFields { obj: s, origin };
    match kind {
        "default" => Ok(None),
        "linear" => Ok(Some(RopeScaling::Linear { factor: reader.f64("factor")? })),
        "llama3" => Ok(Some(RopeScaling::Llama3 {
            factor: reader.f64("factor")?,
            low_freq_factor: reader.f64("low_freq_factor")?,
            high_freq_factor: reader.f64("high_freq_factor")?,
            original_max_position_embeddings: reader.usize("original_max_position_embeddings")?,
        })),
        other => {
            Err(ModelError::config(origin.clone(), format!("rope scaling `{other}` is not supported (supported: default, linear, llama3)")))
        }
    }
}

/// Typed access to a JSON object's fields with errors that name the key.
struct JsonFields<'a> {
    obj: &'a Map<String, Value>,
    origin: &'a Origin,
}

impl JsonFields<'_> {
    fn missing(&self, key: &str) -> ModelError {
        ModelError::config(self.origin.clone(), format!("missing key `{key}`"))
    }

    fn wrong(&self, key: &str, what: &str) -> ModelError {
        ModelError::config(self.origin.clone(), format!("`{key}` must be {what}"))
    }

    fn present(&self, key: &str) -> Option<&Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn string(&self, key: &str) -> Result<String> {
        let v = self.present(key).ok_or_else(|| self.missing(key))?;
        v.as_str().map(str::to_string).ok_or_else(|| self.wrong(key, "a string"))
    }

    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        self.present(key).map(|v| v.as_u64().map(|n| n as usize).ok_or_else(|| self.wrong(key, "a non-negative integer"))).transpose()
    }

    fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?.ok_or_else(|| self.missing(key))
    }

    fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        self.present(key).map(|v| v.as_f64().ok_or_else(|| self.wrong(key, "a number"))).transpose()
    }

    fn f64(&self, key: &str) -> Result<f64> {
        self.opt_f64(key)?.ok_or_else(|| self.missing(key))
    }

    fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        self.present(key).map(|v| v.as_bool().ok_or_else(|| self.wrong(key, "true or false"))).transpose()
    }

    /// A token id field, which HF writes as an integer or a list of integers.
    fn opt_token(&self, key: &str) -> Result<Vec<u32>> {
        let as_id = |v: &Value| v.as_u64().map(|n| n as u32).ok_or_else(|| self.wrong(key, "a token id"));
        match self.present(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items.iter().map(as_id).collect(),
            Some(v) => Ok(vec![as_id(v)?]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOLLM_LIKE: &str = r#"{
        "model_type": "llama", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "tie_word_embeddings": true,
        "bos_token_id": 1, "eos_token_id": [2, 3],
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    }"#;

    #[test]
    fn parses_legacy_keys_and_round_trips() {
        let config = ModelConfig::from_hf_json(SMOLLM_LIKE, "config.json").unwrap();
        assert_eq!(config.head_dim, 16);
        assert_eq!(config.num_kv_groups(), 2);
        assert_eq!(config.eos_token_ids, vec![2, 3]);
        assert!(matches!(config.rope_scaling, Some(RopeScaling::Llama3 { .. })));
        let written = config.to_hf_json("float32").unwrap().to_string();
        let again = ModelConfig::from_hf_json(&written, "again").unwrap();
        assert_eq!(ModelConfig { torch_dtype: None, ..again }, ModelConfig { torch_dtype: None, ..config });
    }

    #[test]
    fn parses_transformers5_rope_parameters() {
        let text = r#"{"model_type": "qwen2", "vocab_size": 10, "hidden_size": 8,
            "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
            "rope_parameters": {"rope_type": "default", "rope_theta": 5000.0}}"#;
        let config = ModelConfig::from_hf_json(text, "c").unwrap();
        assert_eq!(config.rope_theta, 5000.0);
        assert!(config.qkv_bias && !config.o_bias);
        assert_eq!(config.num_key_value_heads, 2);
    }

    #[test]
    fn unknown_architecture_names_file_and_families() {
        let err = ModelConfig::from_hf_json(r#"{"model_type": "gpt_neox"}"#, "dir/config.json").unwrap_err().to_string();
        assert!(err.contains("dir/config.json") && err.contains("gpt_neox") && err.contains("qwen2"), "{err}");
    }

    #[test]
    fn missing_and_mistyped_keys_are_named() {
        let err = ModelConfig::from_hf_json(r#"{"model_type": "llama"}"#, "c.json").unwrap_err();
        assert!(err.to_string().contains("missing key `hidden_size`"), "{err}");
        let err = ModelConfig::from_hf_json(r#"{"model_type": "llama", "hidden_size": "big"}"#, "c.json").unwrap_err();
        assert!(err.to_string().contains("`hidden_size` must be"), "{err}");
    }

    #[test]
    fn rejects_heads_that_do_not_group() {
        let text = r#"{"model_type": "llama", "vocab_size": 10, "hidden_size": 12,
            "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 3,
            "num_key_value_heads": 2}"#;
        let err = ModelConfig::from_hf_json(text, "c").unwrap_err().to_string();
        assert!(err.contains("multiple of num_key_value_heads"), "{err}");
    }
}
