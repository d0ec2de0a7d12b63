//! # rosetta-kernels
//!
//! Rosetta's two custom kernels, hand-written in WGSL (`shaders/`), with a plain burn-tensor
//! reference beside each that runs on every device:
//!
//! - [`contrastive`]: fused symmetric InfoNCE forward and backward (ShifCon's contrastive loss),
//!   registered with burn's autodiff so training uses it;
//! - [`masking`]: Wanda scores, exact-k / N:M pruning masks, mask application, and per-feature
//!   activation statistics (magnitude-feature pruning).
//!
//! And the CPU kernels of quantized inference, [`quant`]: GGML block formats, a packed layout,
//! and an integer matmul with SIMD tiles (AVX-512 VNNI, AVX2) beside a scalar reference.
//!
//! The public functions pick the WGSL path on wgpu devices (feature `wgpu`) and the reference
//! everywhere else; inputs are validated on the host first, so bad shapes or settings are errors,
//! never GPU faults.

pub mod contrastive;
pub mod error;
pub mod masking;
pub mod quant;
#[cfg(feature = "wgpu")]
pub mod wgpu;

pub use contrastive::{ContrastiveOptions, contrastive_loss, contrastive_loss_reference};
pub use error::{KernelError, Result};
pub use masking::{Sparsity, apply_keep, apply_mask, feature_stats, prune_keep, prune_mask, sequence_feature_stats, wanda_scores};

/// Whether `device` runs on burn's wgpu backend (with or without autodiff).
#[cfg(feature = "wgpu")]
pub fn is_wgpu(device: &burn::prelude::Device) -> bool {
    use burn::backend::DispatchDevice;
    matches!(device.clone().without_autodiff().as_dispatch(), DispatchDevice::Cube(cube) if matches!(cube, cubecl::device::Device::Wgpu(_)))
}
