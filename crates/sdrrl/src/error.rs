//! Errors of transfer-set building, each naming the input at fault and the fix.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SdrrlError {
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error(
        "the transfer set came out empty: every candidate was filtered ({skips}); check the instructions, raise max_new_tokens, or relax the filters"
    )]
    Empty { skips: String },
    #[error("stopped during {stage} as asked; rerun the same build to continue where it stopped")]
    Interrupted { stage: &'static str },
    #[error(transparent)]
    Model(#[from] rosetta_model::ModelError),
    #[error(transparent)]
    Data(#[from] rosetta_data::DataError),
}

pub type Result<T, E = SdrrlError> = std::result::Result<T, E>;
