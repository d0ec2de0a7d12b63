//! What can go wrong in a room, said so that the page can show it and carry on.

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Model(#[from] rosetta_model::ModelError),
    #[error(transparent)]
    Shifcon(#[from] rosetta_shifcon::ShifconError),
    #[error(transparent)]
    Prune(#[from] rosetta_prune::error::PruneError),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, LabError>;
