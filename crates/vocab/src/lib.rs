//! # rosetta-vocab
//!
//! Vocabulary extension for a target language — method 1 of Csaki et al. 2023, *Efficiently
//! Adapting Pretrained Language Models To New Languages* (arXiv:2311.05741): train a BPE on
//! target text, add its most useful tokens to the base tokenizer, initialise their embeddings
//! from the old pieces, then train (new rows first, then mixed continued pretraining with
//! English against forgetting — the trainer in `rosetta-train` does the training).
//!
//! Flow: [`train::train_bpe`] (target BPE with the base pipeline) → [`extend::extend`] (real
//! merges appended, verified on the corpus) → [`init::vocabulary_rows`] (rows for
//! `CausalLm::resize_vocabulary`) → [`fertility`] (tokens per char/word before and after).
//! [`plan`] runs the first two with the sizing a user would otherwise tune by hand.

pub mod bpe;
pub mod error;
pub mod extend;
pub mod fertility;
/// Native only: new rows are computed on the host from read-back embeddings.
#[cfg(not(target_family = "wasm"))]
pub mod init;
pub mod train;

use rosetta_model::TextTokenizer;
use serde_json::Value;

pub use bpe::BpeTables;
pub use error::{Result, VocabError};
pub use extend::{ExtendOptions, Extension, Mode, NewToken};
#[cfg(not(target_family = "wasm"))]
pub use init::InitMethod;
pub use train::BpeTrainOptions;

/// The base tokenizer's BPE tables, checked against the model it belongs to.
pub fn base_tables(tokenizer: &TextTokenizer, model_vocab: usize) -> Result<BpeTables> {
    let origin = tokenizer.origin().to_string();
    let json: Value =
        serde_json::from_str(&tokenizer.to_json()?).map_err(|e| VocabError::Tokenizer { origin: origin.clone(), reason: e.to_string() })?;
    let tables = BpeTables::from_json(json, &origin)?;
    if tables.id_end() as usize > model_vocab {
        return Err(VocabError::Mismatch(format!(
            "{origin} has token ids up to {} but the model has only {model_vocab} embedding rows; give the tokenizer that belongs to this model",
            tables.id_end() - 1
        )));
    }
    Ok(tables)
}

/// Trains target BPEs of growing size until they offer enough candidates, then extends. A
/// corpus that cannot support `options.new_tokens` is an error saying how many it can.
pub fn plan(base: &TextTokenizer, base_tables: &BpeTables, texts: &[String], options: &ExtendOptions) -> Result<Extension> {
    let origin = base.origin().to_string();
    let mut vocab_size = 256 + 3 * options.new_tokens + 1000;
    loop {
        let trained = train::train_bpe(base.inner(), &origin, texts, BpeTrainOptions { vocab_size, min_frequency: 2 })?;
        let json: Value = serde_json::from_str(&trained.to_string(false).map_err(|e| VocabError::Invalid(e.to_string()))?)
            .map_err(|e| VocabError::Invalid(e.to_string()))?;
        let target = BpeTables::from_json(json, "the trained target BPE")?;
        let saturated = target.vocab.len() < vocab_size;
        match extend::extend(base_tables, &target, texts, options) {
            Err(VocabError::NotEnoughTokens { .. }) if !saturated && vocab_size < 262_144 => vocab_size *= 2,
            other => return other,
        }
    }
}

/// Resizes `model` for `extension` and returns the extended tokenizer with the record that goes
/// into `rosetta.json` (the trainer reads `new_token_ids` from it for stage 1).
#[cfg(not(target_family = "wasm"))]
pub fn apply(
    model: &mut rosetta_model::CausalLm,
    tokenizer: &TextTokenizer,
    extension: &Extension,
    init: InitMethod,
    seed: u64,
) -> Result<(TextTokenizer, Value)> {
    let rows = init::vocabulary_rows(model, extension, init, seed)?;
    model.resize_vocabulary(&rows)?;
    let extended = tokenizer.with_inner(extension.tokenizer()?);
    use serde_json::json;
    let record = json!({"vocab_extension": {
        "method": "Csaki et al. 2023 vocabulary extension",
        "base_tokenizer": tokenizer.origin().to_string(),
        "init": init,
        "new_token_ids": extension.new_tokens.iter().map(|t| t.id).collect::<Vec<_>>(),
        "new_tokens": extension.new_tokens.iter().map(|t| &t.token).collect::<Vec<_>>(),
        "replaced": extension.replaced.iter().map(|(id, t)| json!({"id": id, "token": t})).collect::<Vec<_>>(),
        "rejected_candidates": extension.rejected,
        "verification_rounds": extension.rounds,
    }});
    Ok((extended, record))
}
