//! Errors of the data crate: every one names the file, and the line where there is one.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    // The I/O error is part of the message, not a separate cause, so it is reported once.
    #[error("{path}: cannot read: {error}")]
    Io { path: PathBuf, error: std::io::Error },

    #[error("{path}:{line}: {reason} (set skip_bad_lines to skip such lines)")]
    BadLine { path: PathBuf, line: usize, reason: String },

    #[error("{path}: {reason}")]
    BadFile { path: PathBuf, reason: String },

    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;
