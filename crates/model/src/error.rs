//! Errors of the model crate.
//!
//! Every variant that comes from a user's file names that file (and the tensor or key
//! inside it) and says what to do about it. Nothing in this crate panics on user input.

use std::fmt;

/// A file (or in-memory buffer, in the browser) that an error refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(pub String);

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<T: AsRef<str>> From<T> for Origin {
    fn from(value: T) -> Self {
        Origin(value.as_ref().to_string())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    // The I/O error is part of the message, not a separate cause, so it is reported once.
    #[error("{origin}: cannot read: {error}")]
    Io { origin: Origin, error: std::io::Error },

    #[error(
        "{origin}: not a valid safetensors file ({reason}). It may be truncated or corrupt: \
         download or export it again"
    )]
    Safetensors { origin: Origin, reason: String },

    #[error("{origin}: not a valid GGUF file: {reason}; download or convert it again")]
    Gguf { origin: Origin, reason: String },

    #[error(
        "{origin}: tensor `{tensor}` is missing. The checkpoint does not match its config \
         (architecture {architecture}); check that config.json belongs to these weights"
    )]
    MissingTensor { origin: Origin, tensor: String, architecture: String },

    #[error(
        "{origin}: tensor `{tensor}` has shape {found:?} but the config implies {expected:?}; \
         check that config.json belongs to these weights"
    )]
    ShapeMismatch { origin: Origin, tensor: String, expected: Vec<usize>, found: Vec<usize> },

    #[error(
        "{origin}: tensor `{tensor}` is stored as {dtype}, which Rosetta cannot read \
         (supported: {supported}); convert the checkpoint to one of those"
    )]
    UnsupportedDtype { origin: Origin, tensor: String, dtype: String, supported: &'static str },

    #[error(
        "{origin}: architecture `{architecture}` is not supported; Rosetta runs the LLaMA family: \
         llama (SmolLM, TinyLlama, Llama 2/3), mistral, qwen2"
    )]
    UnknownArchitecture { origin: Origin, architecture: String },

    #[error("{origin}: invalid model config: {reason}")]
    Config { origin: Origin, reason: String },

    #[error("{origin}: invalid tokenizer: {reason}")]
    Tokenizer { origin: Origin, reason: String },

    #[error("{origin}: {reason}")]
    NotAModel { origin: Origin, reason: String },

    #[error("chat template failed: {0}")]
    ChatTemplate(String),

    #[error("{0}")]
    InvalidArgument(String),

    #[error("device: {0}")]
    Device(String),

    #[error("{origin}: cannot write: {reason}")]
    Write { origin: Origin, reason: String },
}

impl ModelError {
    #[cfg_attr(target_family = "wasm", allow(dead_code))]
    pub(crate) fn io(origin: impl Into<Origin>, error: std::io::Error) -> Self {
        ModelError::Io { origin: origin.into(), error }
    }

    pub(crate) fn config(origin: impl Into<Origin>, reason: impl Into<String>) -> Self {
        ModelError::Config { origin: origin.into(), reason: reason.into() }
    }

    pub(crate) fn tokenizer(origin: impl Into<Origin>, reason: impl fmt::Display) -> Self {
        ModelError::Tokenizer { origin: origin.into(), reason: reason.to_string() }
    }

    pub(crate) fn gguf(origin: impl Into<Origin>, reason: impl Into<String>) -> Self {
        ModelError::Gguf { origin: origin.into(), reason: reason.into() }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        ModelError::InvalidArgument(reason.into())
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
