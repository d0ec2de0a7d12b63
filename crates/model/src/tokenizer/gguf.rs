//! Rebuilding an HF `tokenizer.json` from a GGUF file's tokenizer metadata.
//!
//! Two tokenizer models occur in LLaMA-family GGUFs:
//! - `gpt2`: byte-level BPE (SmolLM, Llama 3, Qwen2). Tokens and merges are stored; the
//!   pre-tokenizer is named by `tokenizer.ggml.pre` and mapped here to the split llama.cpp uses.
//! - `llama`: SentencePiece-style BPE with byte fallback (Llama 2, TinyLlama, Mistral). Merges
//!   are often absent and are then derived from the token scores, as transformers'
//!   `generate_merges` does.
//!
//! Where transformers and llama.cpp disagree we follow llama.cpp, which defines the format:
//! for `smollm` it splits digits one by one (as SmolLM's own `tokenizer.json` does), while
//! transformers' GGUF loader uses plain GPT-2 splitting. The two agree on text without digits.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::error::{ModelError, Result};
use crate::weights::gguf::{GgufFile, GgufValue};

const GPT2_SPLIT: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// llama.cpp token types.
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// What the GGUF says about its tokenizer besides the vocabulary.
#[derive(Debug, Clone, Default)]
pub struct GgufTokenizerInfo {
    pub tokenizer_json: Value,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub unk_token: Option<String>,
    pub pad_token: Option<String>,
    pub add_bos_token: bool,
    pub chat_template: Option<String>,
}

/// GPT-2's byte → printable-unicode table (`bytes_to_unicode`).
pub fn byte_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut next = 256u32;
    for b in 0..256u32 {
        table[b as usize] = if printable(b) {
            char::from_u32(b).unwrap_or('?')
        } else {
            let c = char::from_u32(next).unwrap_or('?');
            next += 1;
            c
        };
    }
    table
}

fn byte_level_split(pre: &str) -> Value {
    let byte_level =
        |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split = |regex: &str| json!({"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false});
    match pre {
        "smollm" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "smaug-bpe" | "dbrx" | "pixtral" => {
            json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_SPLIT), byte_level(false)]})
        }
        "qwen2" | "deepseek-r1-qwen" => json!({"type": "Sequence", "pretokenizers": [split(QWEN2_SPLIT), byte_level(false)]}),
        // `default`, `gpt2` and names we do not know: GPT-2's own split inside ByteLevel.
        _ => {
            let _ = GPT2_SPLIT;
            byte_level(true)
        }
    }
}

/// transformers' `generate_merges`: every split of a token into two tokens that exist, ordered
/// by the score of the merged token (higher first), then by the pieces' lengths.
fn merges_from_scores(tokens: &[String], scores: &[f32]) -> Vec<(String, String)> {
    let vocab: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    let mut merges: Vec<(String, String, f32)> = Vec::new();
    for (token, &score) in tokens.iter().zip(scores) {
        let mut local = Vec::new();
        for (split, _) in token.char_indices().skip(1) {
            let (left, right) = token.split_at(split);
            if let (Some(&l), Some(&r)) = (vocab.get(left), vocab.get(right)) {
                local.push((l, r, left.to_string(), right.to_string()));
            }
        }
        local.sort_by_key(|(l, r, _, _)| (*l, *r));
        merges.extend(local.into_iter().map(|(_, _, l, r)| (l, r, score)));
    }
    // Python's `sorted(..., reverse=True)` is stable: equal keys keep their order.
    merges.sort_by(|a, b| {
        let key = |m: &(String, String, f32)| (m.2, m.0.chars().count(), m.1.chars().count());
        let (ka, kb) = (key(a), key(b));
        kb.0.total_cmp(&ka.0).then(kb.1.cmp(&ka.1)).then(kb.2.cmp(&ka.2))
    });
    merges.into_iter().map(|(l, r, _)| (l, r)).collect()
}

/// Builds the tokenizer description of a GGUF file.
pub fn tokenizer_from_gguf(file: &GgufFile) -> Result<GgufTokenizerInfo> {
    let origin = &file.origin;
    let model = file
        .get("tokenizer.ggml.model")
        .and_then(GgufValue::as_str)
        .ok_or_else(|| ModelError::tokenizer(origin.clone(), "the GGUF has no `tokenizer.ggml.model`; pass a tokenizer.json"))?
        .to_string();
    let tokens = file
        .string_array("tokenizer.ggml.tokens")?
        .ok_or_else(|| ModelError::tokenizer(origin.clone(), "the GGUF has no `tokenizer.ggml.tokens`"))?;
    let token_types: Vec<i64> = match file.get("tokenizer.ggml.token_type").and_then(GgufValue::as_array) {
        Some(items) => items.iter().map(|v| v.as_u64().map(|x| x as i64).unwrap_or(1)).collect(),
        None => vec![1; tokens.len()],
    };
    let merges = file.string_array("tokenizer.ggml.merges")?;
    let token_at = |key: &str| file.get(key).and_then(GgufValue::as_u64).and_then(|id| tokens.get(id as usize).cloned());
    let add_bos_default = model == "llama";
    let add_bos_token = file.get("tokenizer.ggml.add_bos_token").and_then(GgufValue::as_bool).unwrap_or(add_bos_default);
    let bos_token = token_at("tokenizer.ggml.bos_token_id");

    let (vocab_tokens, model_json, pre_tokenizer, decoder, normalizer) = match model.as_str() {
        "gpt2" => {
            let table = byte_to_unicode();
            let alphabet: std::collections::HashSet<char> = table.iter().copied().collect();
            let respell = |t: &str| -> String {
                if t.chars().all(|c| alphabet.contains(&c)) { t.to_string() } else { t.bytes().map(|b| table[b as usize]).collect() }
            };
            let vocab_tokens: Vec<String> = tokens.iter().map(|t| respell(t)).collect();
            let merges =
                merges.ok_or_else(|| ModelError::tokenizer(origin.clone(), "byte-level BPE GGUF without `tokenizer.ggml.merges`"))?;
            let merges: Vec<Value> = merges
                .iter()
                .map(|m| {
                    let (a, b) = m.split_once(' ').unwrap_or((m.as_str(), ""));
                    json!([a, b])
                })
                .collect();
            let pre = file.get("tokenizer.ggml.pre").and_then(GgufValue::as_str).unwrap_or("default");
            let model_json = json!({
                "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "merges": merges,
            });
            let decoder = json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true});
            let normalizer = if pre.starts_with("qwen2") { json!({"type": "NFC"}) } else { Value::Null };
            (vocab_tokens, model_json, byte_level_split(pre), decoder, normalizer)
        }
        "llama" => {
            let merges: Vec<(String, String)> = match merges {
                Some(m) => m
                    .iter()
                    .map(|m| {
                        let (a, b) = m.split_once(' ').unwrap_or((m.as_str(), ""));
                        (a.to_string(), b.to_string())
                    })
                    .collect(),
                None => {
                    let scores: Vec<f32> = match file.get("tokenizer.ggml.scores").and_then(GgufValue::as_array) {
                        Some(s) => s.iter().map(|v| v.as_f64().unwrap_or(0.0) as f32).collect(),
                        None => {
                            return Err(ModelError::tokenizer(
                                origin.clone(),
                                "SentencePiece GGUF has neither merges nor scores; pass a tokenizer.json",
                            ));
                        }
                    };
                    merges_from_scores(&tokens, &scores)
                }
            };
            let unk = token_at("tokenizer.ggml.unknown_token_id").unwrap_or_else(|| "<unk>".into());
            let model_json = json!({
                "type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                "merges": merges.iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>(),
            });
            let pre = json!({"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "first", "split": false});
            let decoder = json!({"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
                {"type": "ByteFallback"}, {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0}]});
            (tokens.clone(), model_json, pre, decoder, Value::Null)
        }
        other => {
            return Err(ModelError::tokenizer(
                origin.clone(),
                format!("tokenizer model `{other}` cannot be rebuilt (supported: gpt2, llama); pass a tokenizer.json"),
            ));
        }
    };

    let mut vocab = serde_json::Map::new();
    for (id, token) in vocab_tokens.iter().enumerate() {
        // Duplicate spellings keep their first id, as HF does.
        vocab.entry(token.clone()).or_insert(json!(id));
    }
    let mut model_json = model_json;
    model_json["vocab"] = Value::Object(vocab);

    let byte_level = model == "gpt2";
    let alphabet: std::collections::HashSet<char> = byte_to_unicode().iter().copied().collect();
    let added_tokens: Vec<Value> = tokens
        .iter()
        .zip(&token_types)
        .enumerate()
        .filter_map(|(id, (token, &ty))| {
            let spelled = !byte_level || token.chars().all(|c| alphabet.contains(&c));
            let special = ty == TOKEN_TYPE_CONTROL;
            (spelled && (special || ty == TOKEN_TYPE_USER_DEFINED)).then(|| {
                json!({"id": id, "content": token, "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": !special, "special": special})
            })
        })
        .collect();

    let post_processor = match (&bos_token, add_bos_token) {
        (Some(bos), true) => {
            let bos_id = vocab_tokens.iter().position(|t| t == bos).unwrap_or(0);
            json!({"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {bos.as_str(): {"id": bos, "ids": [bos_id], "tokens": [bos]}}})
        }
        _ if byte_level => json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true}),
        _ => Value::Null,
    };

    let tokenizer_json = json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added_tokens,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor,
        "decoder": decoder,
        "model": model_json,
    });
    Ok(GgufTokenizerInfo {
        tokenizer_json,
        bos_token,
        eos_token: token_at("tokenizer.ggml.eos_token_id"),
        unk_token: token_at("tokenizer.ggml.unknown_token_id"),
        pad_token: token_at("tokenizer.ggml.padding_token_id"),
        add_bos_token,
        chat_template: file.get("tokenizer.chat_template").and_then(GgufValue::as_str).map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_a_bijection_and_maps_space_to_g_dot() {
        let table = byte_to_unicode();
        let set: std::collections::HashSet<char> = table.iter().copied().collect();
        assert_eq!(set.len(), 256);
        assert_eq!(table[b' ' as usize], 'Ġ');
        assert_eq!(table[b'a' as usize], 'a');
    }

    #[test]
    fn merges_from_scores_prefers_high_scores() {
        let tokens: Vec<String> = ["a", "b", "c", "ab", "abc", "bc"].iter().map(|s| s.to_string()).collect();
        let scores = [0.0, 0.0, 0.0, -1.0, -3.0, -2.0];
        let merges = merges_from_scores(&tokens, &scores);
        assert_eq!(merges[0], ("a".into(), "b".into()));
        assert_eq!(merges[1], ("b".into(), "c".into()));
        assert!(merges.contains(&("ab".into(), "c".into())));
    }
}
