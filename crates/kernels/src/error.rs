//! Errors of the kernels: checked on the host before anything is launched, so bad input is an
//! error and never a GPU fault.

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KernelError {
    #[error("{op}: {reason}")]
    Shape { op: &'static str, reason: String },
    #[error("sparsity must be in [0, 1), got {0}")]
    Sparsity(f64),
    #[error("N:M sparsity needs 0 < N < M and the input width divisible by M; got {n}:{m} with width {width}")]
    NM { n: usize, m: usize, width: usize },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = KernelError> = std::result::Result<T, E>;

pub(crate) fn shape_error(op: &'static str, reason: impl Into<String>) -> KernelError {
    KernelError::Shape { op, reason: reason.into() }
}
