//! # rosetta-model
//!
//! The shared LLaMA-family decoder of Rosetta, one burn crate for the native trainer and the
//! browser lab: configs and weights from HF directories and GGUF files, the forward pass with
//! interventions ([`intervention`]), generation with a KV cache, bits-per-character scoring,
//! vocabulary resizing, and export back to HF.
//!
//! The backend is a runtime [`burn::prelude::Device`]; nothing here is specific to one.
//!
//! ```no_run
//! # fn main() -> rosetta_model::Result<()> {
//! use rosetta_model::{Checkpoint, DeviceKind};
//! let checkpoint = Checkpoint::open("SmolLM2-135M-Instruct.Q4_1.gguf".as_ref(), None)?;
//! let model = checkpoint.load(&DeviceKind::Cpu.device()?)?;
//! # Ok(()) }
//! ```

#[cfg(not(target_family = "wasm"))]
pub mod atomic;
pub mod batch;
pub mod checkpoint;
pub mod choice;
pub mod config;
pub mod device;
pub mod error;
#[cfg(not(target_family = "wasm"))]
pub mod export;
pub mod generate;
#[cfg(not(target_family = "wasm"))]
pub mod gguf_export;
#[cfg(not(target_family = "wasm"))]
pub mod hub;
pub mod intervention;
pub mod model;
pub mod nn;
mod pass;
#[cfg(not(target_family = "wasm"))]
pub mod peft;
pub mod readback;
pub mod scoring;
pub mod tiny;
pub mod tokenizer;
pub mod weights;

pub use batch::{Padding, TokenBatch};
pub use checkpoint::{Checkpoint, CheckpointFormat};
pub use config::{Architecture, ModelConfig, RopeScaling};
pub use device::{DeviceKind, REMOTE_TOKEN_ENV, device_from_spec, is_remote_spec};
pub use error::{ModelError, Result};
pub use intervention::{Interventions, LinearId, LinearKind, Pooling, Trace};
pub use model::{CausalLm, KvCache, VocabRow};
pub use nn::init::DenseLayout;
pub use nn::projection::Precision;
pub use rosetta_kernels::checkpoint::supported as layer_checkpointing_runs_on;
pub use rosetta_kernels::linear::{Products, bf16_products_on};
pub use rosetta_kernels::quant::QuantizeTo;
pub use tokenizer::TextTokenizer;

/// Re-exported so downstream crates name the same burn.
pub use burn;
