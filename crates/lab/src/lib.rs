//! # rosetta-lab
//!
//! The web lab: Rosetta's front door. The shared model crate runs in the browser — on WebGPU where
//! the browser has it, on the CPU (burn's flex backend compiled to wasm) where it does not — and
//! four rooms show the methods on the loaded model, live:
//!
//! - [`fertility`]: the tokenizer room — base vs extended tokenizer, fertility per language
//!   (vocabulary extension, Csaki et al. 2023);
//! - [`shift`]: the shift room — language geometry per layer, the chosen band, and the ShifCon
//!   shift applied at a chosen strength (Zhang et al., ACL 2025);
//! - [`features`]: the magnitude-feature room — feature magnitudes under translation vs
//!   monolingual prompts, and Wanda pruning at a chosen sparsity (Kim et al. 2024);
//! - [`distill`]: the distillation room — a small student trained in the page from the loaded
//!   model's answers (SDRRL's idea, Zhang et al., ACL 2024).
//!
//! The rooms' computations are plain Rust over the method crates and build natively too (their
//! unit tests run there). The [`manifest`] the page reads first is `rosetta_data::lab_manifest`,
//! which `rosetta lab` writes without depending on this crate. [`page_state`] is what a shared
//! link reproduces.
//!
//! In the browser the module runs twice: the page (`ui`: leptos components and the page state)
//! and a Web Worker (`worker`: the backend choice, model loading and every computation), which
//! talk through [`protocol`]. The page's main thread does layout only, so the page answers while
//! the model works; `browser` holds what both need from their global scope.

#[cfg(target_family = "wasm")]
mod browser;
pub mod distill;
pub mod error;
pub mod features;
pub mod fertility;
pub mod page_memory;
pub mod page_state;
pub mod protocol;
pub mod shift;
#[cfg(test)]
mod test_support;
#[cfg(target_family = "wasm")]
mod ui;
#[cfg(target_family = "wasm")]
mod worker;

pub use error::{LabError, Result};
pub use manifest::Manifest;
pub use page_state::{PageState, Room};
pub use rosetta_data::lab_manifest as manifest;
