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
//! In the browser this crate is the lab's worker (`worker`, wasm only: the backend choice, model
//! loading and every computation, in a Web Worker). The page is `rosetta-lab-page` (leptos,
//! layout only), a module of its own, so a visitor's first view waits for none of the model code;
//! the two talk through [`protocol`] (`rosetta-lab-protocol`). `browser` holds the worker's
//! fetches and file reads.

#[cfg(target_family = "wasm")]
mod browser;
pub mod distill;
pub mod error;
pub mod features;
pub mod fertility;
pub mod page_memory;
pub mod shift;
pub mod speed;
#[cfg(test)]
mod test_support;
#[cfg(target_family = "wasm")]
mod worker;

pub use error::{LabError, Result};
pub use manifest::Manifest;
pub use rosetta_data::lab_manifest as manifest;
pub use rosetta_lab_protocol::{self as protocol, PageState, Room, page_state};
