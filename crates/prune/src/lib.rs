//! # rosetta-prune
//!
//! Method 4 of Rosetta: Kim, Suzuki, Hirasawa, Komachi, *Pruning Multilingual Large Language
//! Models for Multilingual Inference* (Findings of EMNLP 2024, arXiv:2409.16911; reference code
//! `hwichan0720/pruning_for_multilinguality`, built on Wanda, Sun et al. 2023).
//!
//! During few-shot translation a few hidden features carry very large activations. Pruning with
//! Wanda scores |W_ij|·‖X_j‖ calibrated on translation prompts keeps the weights that read those
//! features. Flow: `rosetta_data::prompts` builds the prompt texts → [`calibration::Calibration`] tokenises them and
//! carries the residual stream layer by layer → [`prune::prune_model`] scores, masks (through
//! `rosetta-kernels`) and zeroes each layer in order → [`masks`] stores the masks bit-packed;
//! [`features`] is the analysis (per-layer feature norms, top-x% overlap between settings).
//!
//! Unlike the reference code, padding never enters the statistics (the model crate's feature
//! statistics mask it), so batching does not change the result.

pub mod calibration;
pub mod error;
pub mod features;
/// Native only: masks are files the CLI writes and reads.
#[cfg(not(target_family = "wasm"))]
pub mod masks;
pub mod prune;

pub use calibration::Calibration;
pub use error::{PruneError, Result};
pub use prune::{PruneMethod, PruneOptions, PruneSummary, ScoreRule, prune_model};
pub use rosetta_data::prompts::CalibKind;
