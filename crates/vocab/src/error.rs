//! Errors of vocabulary extension: each names the file or setting at fault and the fix.

#[derive(Debug, thiserror::Error)]
pub enum VocabError {
    #[error("{origin}: {reason}")]
    Tokenizer { origin: String, reason: String },
    #[error("{origin} cannot be extended: {reason}")]
    NotExtendable { origin: String, reason: String },
    #[error(
        "asked for {requested} new tokens, but the {lang} corpus supports only {available} (tokens the base vocabulary lacks, reachable by BPE merges and used in the corpus); ask for fewer new tokens or give more {lang} text"
    )]
    NotEnoughTokens { lang: String, requested: usize, available: usize },
    #[error("model and tokenizer do not match: {0}")]
    Mismatch(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Model(#[from] rosetta_model::ModelError),
}

impl VocabError {
    pub(crate) fn tokenizer(origin: &str, reason: impl Into<String>) -> Self {
        VocabError::Tokenizer { origin: origin.to_string(), reason: reason.into() }
    }
}

pub type Result<T, E = VocabError> = std::result::Result<T, E>;
