//! A tiny random llama and its byte-level BPE tokenizer: fixtures for tests across the workspace,
//! and the model the web lab's browser tests load (small enough to keep CI fast). Fixed data,
//! not user input — the `expect`s below cannot fail on it.
#![allow(clippy::expect_used, reason = "fixed fixture data: the expects cannot fail on it")]

use serde_json::json;

use crate::{Architecture, ModelConfig, TextTokenizer};

/// A 2-layer llama with GQA, a separate head, and a 261-token byte-level vocabulary.
pub fn tiny_config() -> ModelConfig {
    ModelConfig {
        architecture: Architecture::Llama,
        vocab_size: 261,
        hidden_size: 32,
        intermediate_size: 48,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 8,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        rope_scaling: None,
        max_position_embeddings: 512,
        tie_word_embeddings: false,
        qkv_bias: false,
        o_bias: false,
        mlp_bias: false,
        sliding_window: None,
        bos_token_id: Some(256),
        eos_token_ids: vec![257],
        pad_token_id: None,
        torch_dtype: None,
    }
}

/// A byte-level BPE tokenizer: the 256 byte symbols, `<s>`, `</s>`, `<|endoftext|>`, and merges
/// for "th" and " t".
pub fn tiny_tokenizer_json() -> String {
    let table = crate::tokenizer::gguf::byte_to_unicode();
    let mut vocab = serde_json::Map::new();
    for (i, c) in table.iter().enumerate() {
        vocab.insert(c.to_string(), json!(i));
    }
    vocab.insert("<s>".into(), json!(256));
    vocab.insert("</s>".into(), json!(257));
    vocab.insert("<|endoftext|>".into(), json!(258));
    vocab.insert("th".into(), json!(259));
    vocab.insert("Ġt".into(), json!(260));
    let special = |id: u32, content: &str| json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true});
    json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [special(256, "<s>"), special(257, "</s>"), special(258, "<|endoftext|>")],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": [["t", "h"], ["Ġ", "t"]]}
    })
    .to_string()
}

pub fn tiny_tokenizer() -> TextTokenizer {
    let config = json!({"bos_token": "<s>", "eos_token": "</s>"}).to_string();
    TextTokenizer::from_hf_json(&tiny_tokenizer_json(), Some(&config), None, "tiny tokenizer.json").expect("tiny tokenizer")
}
