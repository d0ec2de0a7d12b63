//! Errors of calibration and pruning, each naming the setting or input at fault and the fix.

#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "calibration prompt {index} is {tokens} tokens, longer than the {limit}-token context; use fewer shots, shorter prompts, or a larger token limit (≤ the model's context)"
    )]
    PromptTooLong { index: usize, tokens: usize, limit: usize },
    #[error(transparent)]
    Kernel(#[from] rosetta_kernels::KernelError),
    #[error(transparent)]
    Model(#[from] rosetta_model::ModelError),
    #[error(transparent)]
    Data(#[from] rosetta_data::DataError),
}

pub type Result<T, E = PruneError> = std::result::Result<T, E>;
