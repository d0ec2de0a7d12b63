//! The vocabulary and ordered merges of a BPE `tokenizer.json`, and the merge process itself.
//!
//! Extension works on the JSON form because that is what HF `tokenizers` (Rust and Python) and
//! transformers load: new tokens become entries of `model.vocab` with merges appended to
//! `model.merges`, never `added_tokens` (which bypass BPE and would not compose with the rest of
//! a word).

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use crate::error::{Result, VocabError};

/// One merge: two symbols that become their concatenation.
pub type Merge = (String, String);

#[derive(Debug, Clone)]
pub struct BpeTables {
    /// The whole `tokenizer.json`, so that everything but the model section survives untouched.
    json: Value,
    pub vocab: HashMap<String, u32>,
    /// In priority order (first = applied first).
    pub merges: Vec<Merge>,
    /// Contents of `added_tokens` (special tokens), which a replacement must never remove.
    pub added: HashSet<String>,
    /// `model.ignore_merges`: a whole pre-token found in the vocabulary is emitted as is.
    pub ignore_merges: bool,
}

impl BpeTables {
    /// Reads the model section of a `tokenizer.json`. Only BPE without a subword prefix or word
    /// suffix can be extended this way (the LLaMA, Mistral and Qwen2 families all are).
    pub fn from_json(json: Value, origin: &str) -> Result<Self> {
        let model = json.get("model").ok_or_else(|| VocabError::tokenizer(origin, "no `model` section in tokenizer.json"))?;
        let kind = model.get("type").and_then(Value::as_str).unwrap_or("BPE");
        if kind != "BPE" {
            return Err(VocabError::NotExtendable {
                origin: origin.to_string(),
                reason: format!(
                    "its model is {kind}; only BPE tokenizers can grow real merges (a {kind} vocabulary has no merge list to append to — train a BPE tokenizer instead)"
                ),
            });
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if model.get(key).and_then(Value::as_str).is_some_and(|s| !s.is_empty()) {
                return Err(VocabError::NotExtendable {
                    origin: origin.to_string(),
                    reason: format!("its BPE uses `{key}`, which vocabulary extension does not handle"),
                });
            }
        }
        let vocab: HashMap<String, u32> = serde_json::from_value(model.get("vocab").cloned().unwrap_or(Value::Null))
            .map_err(|e| VocabError::tokenizer(origin, format!("model.vocab is not a map of token → id: {e}")))?;
        let merges = model
            .get("merges")
            .and_then(Value::as_array)
            .ok_or_else(|| VocabError::tokenizer(origin, "model.merges is missing"))?
            .iter()
            .map(|m| parse_merge(m).ok_or_else(|| VocabError::tokenizer(origin, format!("bad merge entry {m}"))))
            .collect::<Result<Vec<_>>>()?;
        let added = json
            .get("added_tokens")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|t| t.get("content").and_then(Value::as_str).map(str::to_string)).collect())
            .unwrap_or_default();
        let ignore_merges = model.get("ignore_merges").and_then(Value::as_bool).unwrap_or(false);
        Ok(BpeTables { json, vocab, merges, added, ignore_merges })
    }

    /// The `tokenizer.json` with this vocabulary and merge list.
    pub fn to_json(&self) -> Value {
        let mut json = self.json.clone();
        let mut vocab: Vec<(&String, &u32)> = self.vocab.iter().collect();
        vocab.sort_by_key(|(_, id)| **id);
        let vocab: serde_json::Map<String, Value> = vocab.into_iter().map(|(t, id)| (t.clone(), json!(id))).collect();
        json["model"]["vocab"] = Value::Object(vocab);
        json["model"]["merges"] = Value::Array(self.merges.iter().map(|(a, b)| json!([a, b])).collect());
        json
    }

    /// One past the largest id of the vocabulary or of the added tokens.
    pub fn id_end(&self) -> u32 {
        let added = self
            .json
            .get("added_tokens")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| t.get("id").and_then(Value::as_u64))
            .max()
            .map_or(0, |m| m as u32 + 1);
        self.vocab.values().max().map_or(0, |m| m + 1).max(added)
    }

    pub fn ranks(&self) -> MergeRanks {
        MergeRanks::new(&self.merges)
    }
}

fn parse_merge(m: &Value) -> Option<Merge> {
    match m {
        // tokenizers ≥ 0.20 writes pairs; older files write "a b".
        Value::Array(pair) if pair.len() == 2 => Some((pair[0].as_str()?.to_string(), pair[1].as_str()?.to_string())),
        Value::String(s) => s.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())),
        _ => None,
    }
}

/// Merge priorities for running the merge process by hand.
pub struct MergeRanks(HashMap<(String, String), usize>);

impl MergeRanks {
    pub fn new(merges: &[Merge]) -> Self {
        let mut ranks = MergeRanks(HashMap::with_capacity(merges.len()));
        for merge in merges {
            ranks.push(merge.clone());
        }
        ranks
    }

    /// Appends a merge with the lowest priority so far.
    pub fn push(&mut self, merge: Merge) {
        let next = self.0.len();
        self.0.entry(merge).or_insert(next);
    }

    /// BPE on one pre-token given as symbols (characters of the byte-level or metaspace form):
    /// repeatedly merge the adjacent pair of best rank, leftmost first — HF's order.
    pub fn segment(&self, word: &str) -> Vec<String> {
        let mut symbols: Vec<String> = word.chars().map(String::from).collect();
        loop {
            let best = symbols.windows(2).enumerate().filter_map(|(i, w)| self.0.get(&(w[0].clone(), w[1].clone())).map(|&r| (r, i))).min();
            let Some((_, i)) = best else { return symbols };
            let right = symbols.remove(i + 1);
            symbols[i].push_str(&right);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_apply_by_rank_then_leftmost() {
        let merges: Vec<Merge> = vec![("a".into(), "a".into()), ("b".into(), "c".into()), ("aa".into(), "bc".into())];
        let ranks = MergeRanks::new(&merges);
        assert_eq!(ranks.segment("aaa"), vec!["aa", "a"]);
        assert_eq!(ranks.segment("aabc"), vec!["aabc"]);
        assert_eq!(ranks.segment("xbc"), vec!["x", "bc"]);
    }

    #[test]
    fn non_bpe_tokenizers_are_refused_by_name() {
        let json = json!({"model": {"type": "Unigram", "vocab": []}});
        let err = BpeTables::from_json(json, "tok.json").unwrap_err().to_string();
        assert!(err.contains("Unigram") && err.contains("tok.json"), "{err}");
    }

    #[test]
    fn legacy_and_pair_merges_both_parse() {
        let json = json!({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}});
        let t = BpeTables::from_json(json, "x").unwrap();
        assert_eq!(t.merges, vec![("a".to_string(), "b".to_string())]);
        assert_eq!(t.to_json()["model"]["merges"], json!([["a", "b"]]));
        assert_eq!(t.id_end(), 3);
    }
}
