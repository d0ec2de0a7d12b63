//! Training a BPE on target-language text with the base tokenizer's normalizer and
//! pre-tokenizer, so that its merges live in the same symbol space (byte-level `Ġ` words, or
//! metaspace `▁` words) and can be appended to the base merges.

use std::collections::HashSet;

use serde_json::{Value, json};
use tokenizers::Tokenizer;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::BpeTrainer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;

use crate::bpe::BpeTables;
use crate::error::{Result, VocabError};

#[derive(Debug, Clone, Copy)]
pub struct BpeTrainOptions {
    /// Size of the trained vocabulary (alphabet included).
    pub vocab_size: usize,
    /// Pairs seen fewer times are not merged.
    pub min_frequency: u64,
}

impl Default for BpeTrainOptions {
    fn default() -> Self {
        BpeTrainOptions { vocab_size: 8000, min_frequency: 2 }
    }
}

/// A BPE trained on `texts`, sharing `base`'s normalizer, pre-tokenizer and decoder. `base` must
/// itself be BPE (checked, with the reason when it is not).
pub fn train_bpe(base: &Tokenizer, origin: &str, texts: &[String], options: BpeTrainOptions) -> Result<Tokenizer> {
    if texts.iter().all(|t| t.trim().is_empty()) {
        return Err(VocabError::Invalid("the training text is empty: give documents in the target language".into()));
    }
    let base_json: Value = serde_json::from_str(&base.to_string(false).map_err(|e| VocabError::tokenizer(origin, e.to_string()))?)
        .map_err(|e| VocabError::tokenizer(origin, e.to_string()))?;
    BpeTables::from_json(base_json.clone(), origin)?;
    let byte_level = base_json["pre_tokenizer"].to_string().contains("\"ByteLevel\"");

    // The same text pipeline with an empty BPE and no special tokens to split on.
    let mut json = base_json;
    json["added_tokens"] = json!([]);
    json["post_processor"] = Value::Null;
    json["model"] = json!({"type": "BPE", "vocab": {}, "merges": [], "dropout": null, "unk_token": null,
        "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
        "ignore_merges": false});
    let mut tokenizer: Tokenizer =
        json.to_string().parse().map_err(|e| VocabError::tokenizer(origin, format!("cannot rebuild its pipeline for training: {e}")))?;
    let alphabet: HashSet<char> = if byte_level { ByteLevel::alphabet().into_iter().collect() } else { HashSet::new() };
    let trainer = BpeTrainer::builder()
        .vocab_size(options.vocab_size)
        .min_frequency(options.min_frequency)
        .initial_alphabet(alphabet)
        .show_progress(false)
        .build();
    let mut trainer = TrainerWrapper::BpeTrainer(trainer);
    tokenizer.train(&mut trainer, texts.iter()).map_err(|e| VocabError::Invalid(format!("BPE training failed: {e}")))?;
    Ok(tokenizer)
}
