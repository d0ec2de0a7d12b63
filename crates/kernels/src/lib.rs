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
//! The fused CPU kernels of training, [`cpu`] (registered with burn's autodiff for the CPU
//! backend): projections with their LoRA branch ([`linear`]), [`attention`] with its own
//! backward, the LM head fused with the loss ([`cross_entropy`]), [`rms_norm`], [`rotary`] and
//! [`swiglu`];
//! each beside a plain-tensor reference.
//!
//! And the CPU kernels of quantized inference, [`quant`]: GGML block formats, a packed layout,
//! and an integer matmul with SIMD tiles (AVX-512 VNNI, AVX2) beside a scalar reference.
//!
//! The public functions pick the WGSL path on wgpu devices (feature `wgpu`) and the reference
//! everywhere else; inputs are validated on the host first, so bad shapes or settings are errors,
//! never GPU faults.

pub mod adamw;
pub mod attention;
pub mod checkpoint;
pub mod contrastive;
pub mod cpu;
pub mod cross_entropy;
pub mod error;
#[cfg(feature = "flex")]
mod flex;
pub mod linear;
pub mod masking;
pub mod quant;
pub mod rms_norm;
pub mod rotary;
pub mod swiglu;
#[cfg(feature = "wgpu")]
pub mod wgpu;

pub use contrastive::{ContrastiveOptions, contrastive_loss, contrastive_loss_reference};
pub use error::{KernelError, Result};
pub use masking::{Sparsity, apply_keep, apply_mask, feature_stats, prune_keep, prune_mask, sequence_feature_stats, wanda_scores};

/// Whether the fused CPU kernels can take tensors of `dtypes` on `device`: f32 on burn's CPU
/// backend (with or without autodiff), built with feature `flex`.
pub(crate) fn fused_cpu_supports(device: &burn::prelude::Device, dtypes: &[burn::tensor::DType]) -> bool {
    #[cfg(feature = "flex")]
    return flex::is_flex(device) && dtypes.iter().all(|d| *d == burn::tensor::DType::F32);
    #[cfg(not(feature = "flex"))]
    {
        let _ = (device, dtypes);
        false
    }
}

/// The error for a fused CPU kernel called where [`fused_cpu_supports`] says no.
pub(crate) fn fused_cpu_refusal(op: &'static str, device: &burn::prelude::Device, dtype: burn::tensor::DType) -> KernelError {
    error::shape_error(op, format!("the fused kernel runs f32 on the CPU backend (feature `flex`), not {dtype:?} on {device:?}"))
}

/// Whether the decoder layer's WGSL kernels (`wgpu::layer`) can take tensors of `dtypes` on
/// `device`: f32 inference (no autodiff) on burn's wgpu backend.
pub(crate) fn wgpu_inference_supports(device: &burn::prelude::Device, dtypes: &[burn::tensor::DType]) -> bool {
    is_wgpu(device) && !device.is_autodiff() && dtypes.iter().all(|d| *d == burn::tensor::DType::F32)
}

/// The error for a WGSL layer kernel called where [`wgpu_inference_supports`] says no.
pub(crate) fn wgpu_inference_refusal(op: &'static str, device: &burn::prelude::Device, dtype: burn::tensor::DType) -> KernelError {
    error::shape_error(op, format!("the WGSL kernel runs f32 inference on wgpu (feature `wgpu`), not {dtype:?} on {device:?}"))
}

/// Whether `device` runs on burn's wgpu backend (with or without autodiff).
#[cfg(feature = "wgpu")]
pub fn is_wgpu(device: &burn::prelude::Device) -> bool {
    use burn::backend::DispatchDevice;
    matches!(device.clone().without_autodiff().as_dispatch(), DispatchDevice::Cube(cube) if matches!(cube, cubecl::device::Device::Wgpu(_)))
}

/// Without the `wgpu` feature no device is a wgpu device.
#[cfg(not(feature = "wgpu"))]
pub fn is_wgpu(_device: &burn::prelude::Device) -> bool {
    false
}

/// `t` in `like`'s float type (a no-op when they agree): the constants of a pass (RoPE tables,
/// shift vectors) meet activations computed in bf16 or f16 by mixed-precision training.
pub fn cast_like<const D: usize, const E: usize>(t: burn::prelude::Tensor<D>, like: &burn::prelude::Tensor<E>) -> burn::prelude::Tensor<D> {
    cast_to(t, like.dtype())
}

/// `t` in the float type `dtype` (a no-op when it already is; f32 for a non-float `dtype`).
pub fn cast_to<const D: usize>(t: burn::prelude::Tensor<D>, dtype: burn::tensor::DType) -> burn::prelude::Tensor<D> {
    use burn::tensor::{DType, FloatDType};
    if t.dtype() == dtype {
        return t;
    }
    t.cast(match dtype {
        DType::BF16 => FloatDType::BF16,
        DType::F16 => FloatDType::F16,
        DType::F64 => FloatDType::F64,
        _ => FloatDType::F32,
    })
}

/// The f32 values of a tensor on the CPU backend, row-major. The fused CPU passes call it only
/// on that backend, whose reads complete at once (also in the browser, where clippy refuses
/// synchronous reads elsewhere).
#[cfg_attr(target_family = "wasm", allow(clippy::disallowed_methods, reason = "called only on the CPU backend"))]
pub(crate) fn cpu_values<const D: usize>(t: burn::prelude::Tensor<D>, op: &'static str) -> error::Result<Vec<f32>> {
    t.into_data().try_into_vec::<f32>().map_err(|e| error::shape_error(op, format!("values unreadable: {e:?}")))
}
