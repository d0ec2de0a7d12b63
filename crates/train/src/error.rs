//! Errors of the trainer: each names the file, step or parameter it is about, and the way out.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{path}: invalid training config: {reason}")]
    Config { path: PathBuf, reason: String },

    #[error(transparent)]
    Model(#[from] rosetta_model::ModelError),

    #[error(transparent)]
    Data(#[from] rosetta_data::DataError),

    #[error("{path}: checkpoint is unreadable or corrupt ({reason}); remove it to resume from {fallback}")]
    CorruptCheckpoint { path: PathBuf, reason: String, fallback: String },

    #[error("{0}")]
    Resume(String),

    #[error(
        "non-finite {what} at step {step} (rows {rows}); training stopped. The last good checkpoint \
         is {checkpoint}; lower optim.lr or enable optim.grad_clip and resume from it"
    )]
    NonFinite { what: &'static str, step: usize, rows: String, checkpoint: String },

    #[error(
        "device `{device}` stopped answering ({reason}); training stopped. Nothing written is lost: the last checkpoint is \
         {checkpoint}. Start `rosetta serve-device` there again and run with --resume"
    )]
    DeviceLost { device: String, reason: String, checkpoint: String },

    #[error("{path}: cannot write: {reason}")]
    Write { path: PathBuf, reason: String },

    #[error("{0}")]
    Invalid(String),

    /// A training method's own error (ShifCon's, …), kept whole: its message and its causes.
    #[error(transparent)]
    Method(Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
