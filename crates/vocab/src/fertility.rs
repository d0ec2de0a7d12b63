//! Fertility: how many tokens a tokenizer spends per character and per word of a language —
//! the cost a vocabulary extension is meant to cut (Csaki et al. report up to ~50% fewer
//! tokens for their target languages).

use std::collections::BTreeMap;

use rosetta_data::monolingual::Document;
use tokenizers::Tokenizer;

use crate::error::{Result, VocabError};

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Fertility {
    pub documents: usize,
    pub chars: usize,
    /// Whitespace-separated words (meaningless for scripts without spaces: zh, th).
    pub words: usize,
    pub tokens: usize,
}

impl Fertility {
    pub fn tokens_per_char(&self) -> f64 {
        self.tokens as f64 / self.chars.max(1) as f64
    }

    pub fn tokens_per_word(&self) -> f64 {
        self.tokens as f64 / self.words.max(1) as f64
    }
}

/// Per-language token counts of `documents` under `tokenizer` (no special tokens).
pub fn fertility(tokenizer: &Tokenizer, documents: &[Document]) -> Result<BTreeMap<String, Fertility>> {
    let texts: Vec<String> = documents.iter().map(|d| d.text.clone()).collect();
    let encodings = tokenizer.encode_batch(texts, false).map_err(|e| VocabError::Invalid(format!("encoding failed: {e}")))?;
    let mut out: BTreeMap<String, Fertility> = BTreeMap::new();
    for (doc, enc) in documents.iter().zip(&encodings) {
        let f = out.entry(doc.lang.clone()).or_default();
        f.documents += 1;
        f.chars += doc.text.chars().count();
        f.words += doc.text.split_whitespace().count();
        f.tokens += enc.get_ids().len();
    }
    Ok(out)
}
