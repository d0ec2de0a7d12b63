//! Text ↔ token ids, through HF `tokenizers` so that Rosetta and HF encode identically.
//!
//! A [`TextTokenizer`] comes from an HF `tokenizer.json` (+ `tokenizer_config.json`) or is
//! rebuilt from GGUF metadata ([`gguf`]); either way it can be written back as files that
//! `transformers.AutoTokenizer` loads.

pub mod chat;
pub mod gguf;

use serde_json::{Value, json};
use tokenizers::Tokenizer;

use crate::error::{ModelError, Origin, Result};
use crate::weights::gguf::GgufFile;

#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    origin: Origin,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub unk_token: Option<String>,
    pub pad_token: Option<String>,
    /// Whether encoding with special tokens prepends BOS (informational; the tokenizer's own
    /// post-processor does the work).
    pub add_bos_token: bool,
    pub chat_template: Option<String>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer").field("origin", &self.origin).field("vocab_size", &self.vocab_size()).finish()
    }
}

/// A special token in `tokenizer_config.json`: a string or an `AddedToken` object.
fn special_token(config: &Value, key: &str) -> Option<String> {
    match config.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

impl TextTokenizer {
    /// From the contents of `tokenizer.json` and, optionally, `tokenizer_config.json` and a
    /// separate `chat_template.jinja` (transformers 5 writes the template there).
    pub fn from_hf_json(
        tokenizer_json: &str,
        tokenizer_config_json: Option<&str>,
        chat_template_file: Option<String>,
        origin: impl Into<Origin>,
    ) -> Result<Self> {
        let origin = origin.into();
        // JSON syntax first: tokenizers 0.23 panics (`expect("Helper")` in its decoder's
        // deserializer) on some malformed documents instead of returning an error.
        serde_json::from_str::<serde::de::IgnoredAny>(tokenizer_json)
            .map_err(|e| ModelError::tokenizer(origin.clone(), format!("not a valid tokenizer.json: {e}")))?;
        let inner: Tokenizer =
            tokenizer_json.parse().map_err(|e| ModelError::tokenizer(origin.clone(), format!("not a valid tokenizer.json: {e}")))?;
        let config: Value = match tokenizer_config_json {
            Some(text) => serde_json::from_str(text)
                .map_err(|e| ModelError::tokenizer(origin.clone(), format!("tokenizer_config.json is not valid JSON: {e}")))?,
            None => json!({}),
        };
        let chat_template = chat_template_file.or_else(|| match config.get("chat_template") {
            Some(Value::String(s)) => Some(s.clone()),
            // A list of named templates: take the default one.
            Some(Value::Array(items)) => items
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template").and_then(Value::as_str))
                .map(str::to_string),
            _ => None,
        });
        let has_bos_post_processor = tokenizer_json.contains("\"TemplateProcessing\"");
        Ok(TextTokenizer {
            inner,
            origin,
            bos_token: special_token(&config, "bos_token"),
            eos_token: special_token(&config, "eos_token"),
            unk_token: special_token(&config, "unk_token"),
            pad_token: special_token(&config, "pad_token"),
            add_bos_token: config.get("add_bos_token").and_then(Value::as_bool).unwrap_or(has_bos_post_processor),
            chat_template,
        })
    }

    /// Rebuilt from a GGUF file's metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let info = gguf::tokenizer_from_gguf(file)?;
        let text = info.tokenizer_json.to_string();
        let inner: Tokenizer = text
            .parse()
            .map_err(|e| ModelError::tokenizer(file.origin.clone(), format!("the tokenizer rebuilt from GGUF metadata is invalid: {e}")))?;
        Ok(TextTokenizer {
            inner,
            origin: file.origin.clone(),
            bos_token: info.bos_token,
            eos_token: info.eos_token,
            unk_token: info.unk_token,
            pad_token: info.pad_token,
            add_bos_token: info.add_bos_token,
            chat_template: info.chat_template,
        })
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// Replaces the underlying tokenizer (vocabulary extension), keeping special tokens.
    pub fn with_inner(&self, inner: Tokenizer) -> Self {
        TextTokenizer { inner, ..self.clone() }
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// One past the largest token id: the embedding rows the tokenizer's ids need. Not
    /// [`Self::vocab_size`], which counts entries — a tokenizer.json may number its tokens
    /// sparsely.
    pub fn id_bound(&self) -> usize {
        self.inner.get_vocab(true).values().max().map_or(0, |&id| id as usize + 1)
    }

    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        self.inner
            .encode(text, add_special_tokens)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| ModelError::tokenizer(self.origin.clone(), format!("cannot encode text: {e}")))
    }

    /// Token ids with the byte range of `text` each one came from. A byte-level token holding
    /// part of a multi-byte character spans that whole character (so do its neighbours).
    pub fn encode_with_spans(&self, text: &str) -> Result<Vec<(u32, std::ops::Range<usize>)>> {
        let encoding =
            self.inner.encode(text, false).map_err(|e| ModelError::tokenizer(self.origin.clone(), format!("cannot encode text: {e}")))?;
        Ok(encoding.get_ids().iter().zip(encoding.get_offsets()).map(|(&id, &(start, end))| (id, start..end)).collect())
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| ModelError::tokenizer(self.origin.clone(), format!("cannot decode ids: {e}")))
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_token.as_deref().and_then(|t| self.token_to_id(t))
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos_token.as_deref().and_then(|t| self.token_to_id(t))
    }

    /// The token that stands before a document when scoring or training on plain text, so that
    /// the first real token is predicted from context like every other: BOS where the tokenizer
    /// prepends it anyway, else the end-of-text separator pretraining corpora put between
    /// documents, else BOS, else EOS.
    pub fn document_start_id(&self) -> Option<u32> {
        if self.add_bos_token
            && let Some(bos) = self.bos_id()
        {
            return Some(bos);
        }
        ["<|endoftext|>", "<|end_of_text|>", "</s>"]
            .iter()
            .find_map(|t| self.token_to_id(t))
            .or_else(|| self.bos_id())
            .or_else(|| self.eos_id())
    }

    /// The contents of `tokenizer.json`.
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(true).map_err(|e| ModelError::tokenizer(self.origin.clone(), format!("cannot serialise: {e}")))
    }

    /// The contents of `tokenizer_config.json` for an HF export.
    pub fn tokenizer_config(&self, model_max_length: usize) -> Value {
        let mut config = json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "add_bos_token": self.add_bos_token,
            "add_eos_token": false,
            "clean_up_tokenization_spaces": false,
            "model_max_length": model_max_length,
        });
        for (key, value) in
            [("bos_token", &self.bos_token), ("eos_token", &self.eos_token), ("unk_token", &self.unk_token), ("pad_token", &self.pad_token)]
        {
            if let Some(v) = value {
                config[key] = json!(v);
            }
        }
        if let Some(template) = &self.chat_template {
            config["chat_template"] = json!(template);
        }
        config
    }
}
