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

/// The `tokenizer.ggml.pre` name whose split [`byte_level_split`] rebuilds a tokenizer.json's
/// `pre_tokenizer` — the inverse, for writing GGUF. `None` when llama.cpp knows no such split.
pub fn gguf_pre_name(pre_tokenizer: &Value) -> Option<&'static str> {
    fn parts(v: &Value) -> Vec<&Value> {
        match v.get("type").and_then(Value::as_str) {
            Some("Sequence") => {
                v.get("pretokenizers").and_then(Value::as_array).map(|p| p.iter().flat_map(parts).collect()).unwrap_or_default()
            }
            _ => vec![v],
        }
    }
    let parts = parts(pre_tokenizer);
    let of_type = |t: &str| parts.iter().filter(|p| p.get("type").and_then(Value::as_str) == Some(t)).collect::<Vec<_>>();
    let byte_level = of_type("ByteLevel");
    let regex_byte_level = byte_level.len() == 1 && byte_level[0].get("use_regex").and_then(Value::as_bool) != Some(false);
    let splits: Vec<&str> = of_type("Split").iter().filter_map(|p| p.get("pattern")?.get("Regex")?.as_str()).collect();
    let individual_digits = of_type("Digits").iter().any(|p| p.get("individual_digits").and_then(Value::as_bool) == Some(true));
    match (parts.len(), splits.as_slice()) {
        (2, []) if individual_digits && regex_byte_level => Some("smollm"),
        (2, [regex]) if *regex == LLAMA3_SPLIT && byte_level.len() == 1 => Some("llama-bpe"),
        (2, [regex]) if *regex == QWEN2_SPLIT && byte_level.len() == 1 => Some("qwen2"),
        (1, []) if regex_byte_level => Some("gpt-2"),
        _ => None,
    }
}

/// GGUF tokenizer metadata (`tokenizer.ggml.*`) for a byte-level BPE tokenizer — the inverse of
/// [`tokenizer_from_gguf`]'s `gpt2` branch. `vocab_size` rows are written (the embedding's; rows
/// past the tokenizer's vocabulary become unused padding tokens, as llama.cpp's converter does).
/// SentencePiece-style tokenizers (byte fallback) are refused: their GGUF form needs scores that
/// a tokenizer.json does not hold.
pub fn gguf_tokenizer_metadata(
    tokenizer: &super::TextTokenizer,
    vocab_size: usize,
    special: &GgufSpecialTokens,
) -> Result<(Vec<(String, GgufValue)>, Option<String>)> {
    let origin = tokenizer.origin().clone();
    let json: Value = serde_json::from_str(&tokenizer.to_json()?).map_err(|e| ModelError::tokenizer(origin.clone(), e.to_string()))?;
    let model = &json["model"];
    if model.get("type").and_then(Value::as_str) != Some("BPE") || model.get("byte_fallback").and_then(Value::as_bool) == Some(true) {
        return Err(ModelError::tokenizer(
            origin,
            "GGUF export writes byte-level BPE tokenizers (SmolLM, Llama 3, Qwen2); this one is SentencePiece-style: \
             export an HF directory and convert it with llama.cpp's convert_hf_to_gguf.py",
        ));
    }
    let mut entries: Vec<(u64, &str, i32)> = Vec::new();
    for (token, id) in model.get("vocab").and_then(Value::as_object).into_iter().flatten() {
        entries.push((id.as_u64().unwrap_or(u64::MAX), token, 1));
    }
    for added in json.get("added_tokens").and_then(Value::as_array).into_iter().flatten() {
        let ty = if added.get("special").and_then(Value::as_bool) == Some(true) { TOKEN_TYPE_CONTROL } else { TOKEN_TYPE_USER_DEFINED };
        entries.push((added["id"].as_u64().unwrap_or(u64::MAX), added["content"].as_str().unwrap_or(""), ty as i32));
    }
    // A token the embedding has no row for would be produced by the merges and break llama.cpp.
    if let Some((id, token, _)) = entries.iter().find(|(id, _, _)| *id >= vocab_size as u64) {
        return Err(ModelError::tokenizer(
            origin,
            format!(
                "token `{token}` has id {id}, but the model's embedding has {vocab_size} rows: the tokenizer does not belong to this model"
            ),
        ));
    }
    let mut tokens: Vec<Option<String>> = vec![None; vocab_size];
    let mut types = vec![1i32; vocab_size];
    for (id, token, ty) in entries {
        tokens[id as usize] = Some(token.to_string());
        types[id as usize] = ty;
    }
    const TOKEN_TYPE_UNUSED: i32 = 5;
    let tokens: Vec<GgufValue> = tokens
        .into_iter()
        .enumerate()
        .map(|(id, t)| {
            GgufValue::String(t.unwrap_or_else(|| {
                types[id] = TOKEN_TYPE_UNUSED;
                format!("[PAD{id}]")
            }))
        })
        .collect();
    let merges: Vec<GgufValue> = model
        .get("merges")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|m| match m {
            Value::Array(pair) => {
                GgufValue::String(format!("{} {}", pair[0].as_str().unwrap_or(""), pair.get(1).and_then(Value::as_str).unwrap_or("")))
            }
            other => GgufValue::String(other.as_str().unwrap_or("").to_string()),
        })
        .collect();
    let (pre, warning) = match gguf_pre_name(&json["pre_tokenizer"]) {
        Some(name) => (name, None),
        None => (
            "default",
            Some(format!("the tokenizer's pre-tokenizer {} has no llama.cpp name; wrote `default` (GPT-2's split)", json["pre_tokenizer"])),
        ),
    };
    let s = |v: &str| GgufValue::String(v.to_string());
    let mut kv = vec![
        ("tokenizer.ggml.model".to_string(), s("gpt2")),
        ("tokenizer.ggml.pre".to_string(), s(pre)),
        ("tokenizer.ggml.tokens".to_string(), GgufValue::Array(tokens)),
        ("tokenizer.ggml.token_type".to_string(), GgufValue::Array(types.into_iter().map(GgufValue::I32).collect())),
        ("tokenizer.ggml.merges".to_string(), GgufValue::Array(merges)),
        ("tokenizer.ggml.add_bos_token".to_string(), GgufValue::Bool(tokenizer.add_bos_token)),
    ];
    for (key, id) in [("bos", special.bos), ("eos", special.eos), ("padding", special.pad)] {
        if let Some(id) = id {
            kv.push((format!("tokenizer.ggml.{key}_token_id"), GgufValue::U32(id)));
        }
    }
    if let Some(template) = &tokenizer.chat_template {
        kv.push(("tokenizer.chat_template".to_string(), s(template)));
    }
    Ok((kv, warning))
}

/// The special token ids a GGUF records (from the model's config).
#[derive(Debug, Clone, Copy, Default)]
pub struct GgufSpecialTokens {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub pad: Option<u32>,
}

/// The longest token [`merges_from_scores`] splits (real vocabularies stay under 100 bytes).
const MAX_TOKEN_BYTES: usize = 1024;
/// Merges per token beyond which a token list is taken as adversarial.
const MAX_MERGES_PER_TOKEN: usize = 16;

/// transformers' `generate_merges`: every split of a token into two tokens that exist, ordered
/// by the score of the merged token (higher first), then by the pieces' lengths.
///
/// Bounded, because the token list comes from the file: splitting a token costs its length
/// squared, so a token longer than [`MAX_TOKEN_BYTES`] is refused, and so is a list that yields
/// more than [`MAX_MERGES_PER_TOKEN`] merges per token (real vocabularies yield about one).
fn merges_from_scores(tokens: &[String], scores: &[f32]) -> std::result::Result<Vec<(String, String)>, String> {
    if scores.len() != tokens.len() {
        return Err(format!("{} scores for {} tokens", scores.len(), tokens.len()));
    }
    if let Some(long) = tokens.iter().find(|t| t.len() > MAX_TOKEN_BYTES) {
        return Err(format!("a token of {} bytes (at most {MAX_TOKEN_BYTES})", long.len()));
    }
    let limit = tokens.len().saturating_mul(MAX_MERGES_PER_TOKEN);
    let vocab: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    let mut merges: Vec<(String, String, f32)> = Vec::new();
    for (token, &score) in tokens.iter().zip(scores) {
        if merges.len() > limit {
            return Err(format!("more than {MAX_MERGES_PER_TOKEN} merges per token"));
        }
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
    Ok(merges.into_iter().map(|(l, r, _)| (l, r)).collect())
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
                    merges_from_scores(&tokens, &scores).map_err(|reason| {
                        ModelError::tokenizer(
                            origin.clone(),
                            format!("cannot rebuild the SentencePiece merges: {reason}; the file is corrupt"),
                        )
                    })?
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
        let merges = merges_from_scores(&tokens, &scores).unwrap();
        assert_eq!(merges[0], ("a".into(), "b".into()));
        assert_eq!(merges[1], ("b".into(), "c".into()));
        assert!(merges.contains(&("ab".into(), "c".into())));
    }

    #[test]
    fn adversarial_token_lists_are_refused_before_the_quadratic_work() {
        let long = vec!["a".repeat(MAX_TOKEN_BYTES + 1)];
        assert!(merges_from_scores(&long, &[0.0]).unwrap_err().contains("bytes"));
        // a, aa, aaa, …: every split of every token is a merge.
        let ladder: Vec<String> = (1..=200).map(|n| "a".repeat(n)).collect();
        let scores = vec![0.0; ladder.len()];
        assert!(merges_from_scores(&ladder, &scores).unwrap_err().contains("merges per token"));
        assert!(merges_from_scores(&ladder, &scores[1..]).unwrap_err().contains("scores"));
    }
}
