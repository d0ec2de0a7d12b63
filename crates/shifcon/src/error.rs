//! Errors of the geometry analysis, the shift and ShifCon training, each naming the input at
//! fault and the fix.

#[derive(Debug, thiserror::Error)]
pub enum ShifconError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "{what}: {count} sentences in `{lang}`, but a covariance estimate in {dims} dimensions needs at least {needed}; give more parallel sentences (or fewer subspace dimensions)"
    )]
    TooFewSentences { what: String, lang: String, count: usize, dims: usize, needed: usize },
    #[error(
        "band {to}..{back} is outside this model's residual sites 0..={sites} (it has {sites} layers); choose 0 ≤ L_to < L_bk ≤ {sites}"
    )]
    BandOutOfRange { to: usize, back: usize, sites: usize },
    #[error(transparent)]
    Kernel(#[from] rosetta_kernels::KernelError),
    #[error(transparent)]
    Model(#[from] rosetta_model::ModelError),
    #[error(transparent)]
    Data(#[from] rosetta_data::DataError),
}

pub type Result<T, E = ShifconError> = std::result::Result<T, E>;
