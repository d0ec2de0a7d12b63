//! RMSNorm over the last dimension, `x · γ / √(mean(x²) + ε)` (HF `LlamaRMSNorm`, burn's
//! `RmsNorm`).
//!
//! [`rms_norm`] runs the fused CPU kernel (`cpu::rms_norm`: one pass per row forward, one
//! backward, its own autodiff step) under autodiff on the CPU backend, [`wgpu_rms_norm`] (one WGSL
//! dispatch, `shaders/rms_norm.wgsl`) for inference on wgpu, and [`rms_norm_reference`] — burn's
//! `RmsNorm` formula, the decoder's path before — everywhere else. [`add_rms_norm`] is a residual
//! connection followed by RMSNorm (the decoder layer's `h + attn`, then the norm before its MLP):
//! one dispatch on wgpu, the add and [`rms_norm`] elsewhere.

use burn::prelude::*;

use crate::error::{Result, shape_error};

fn check<const D: usize>(x: &Tensor<D>, gamma: &Tensor<1>, epsilon: f64) -> Result<()> {
    let d = gamma.dims()[0];
    if D == 0 || x.dims()[D - 1] != d || d == 0 {
        return Err(shape_error("rms norm", format!("inputs {:?} do not end in the {d} weights of the norm", x.dims())));
    }
    if !(epsilon.is_finite() && epsilon >= 0.0) {
        return Err(shape_error("rms norm", format!("epsilon must be finite and non-negative, got {epsilon}")));
    }
    Ok(())
}

/// burn's `RmsNorm::forward`, op for op: every device, and what the fused kernel is tested against.
pub fn rms_norm_reference<const D: usize>(x: Tensor<D>, gamma: Tensor<1>, epsilon: f64) -> Result<Tensor<D>> {
    check(&x, &gamma, epsilon)?;
    let rms = (x.clone().square().mean_dim(D - 1) + epsilon).sqrt();
    Ok((x / rms) * gamma.unsqueeze())
}

/// The fused CPU kernel. An error off the CPU backend and for non-f32 tensors.
pub fn fused_rms_norm<const D: usize>(x: Tensor<D>, gamma: Tensor<1>, epsilon: f64) -> Result<Tensor<D>> {
    check(&x, &gamma, epsilon)?;
    if !crate::fused_cpu_supports(&x.device(), &[x.dtype(), gamma.dtype()]) {
        return Err(crate::fused_cpu_refusal("rms norm", &x.device(), x.dtype()));
    }
    #[cfg(feature = "flex")]
    return Ok(crate::flex::rms_norm::rms_norm(x, gamma, epsilon as f32));
    #[cfg(not(feature = "flex"))]
    Err(crate::fused_cpu_refusal("rms norm", &x.device(), gamma.dtype()))
}

/// The WGSL kernel (`shaders/rms_norm.wgsl`, one dispatch). An error off wgpu, under autodiff and
/// for non-f32 tensors.
pub fn wgpu_rms_norm<const D: usize>(x: Tensor<D>, gamma: Tensor<1>, epsilon: f64) -> Result<Tensor<D>> {
    check(&x, &gamma, epsilon)?;
    if !crate::wgpu_inference_supports(&x.device(), &[x.dtype(), gamma.dtype()]) {
        return Err(crate::wgpu_inference_refusal("rms norm", &x.device(), x.dtype()));
    }
    #[cfg(feature = "wgpu")]
    return Ok(crate::wgpu::layer::rms_norm(x, gamma, epsilon as f32));
    #[cfg(not(feature = "wgpu"))]
    Err(crate::wgpu_inference_refusal("rms norm", &x.device(), gamma.dtype()))
}

fn check_delta<const D: usize>(x: &Tensor<D>, delta: &Tensor<D>) -> Result<()> {
    if x.dims() != delta.dims() {
        return Err(shape_error("rms norm", format!("the residual {:?} and the added {:?} differ in shape", x.dims(), delta.dims())));
    }
    Ok(())
}

/// `x + delta` and its RMSNorm, as composed tensor ops: what the WGSL kernel is tested against.
pub fn add_rms_norm_reference<const D: usize>(
    x: Tensor<D>,
    delta: Tensor<D>,
    gamma: Tensor<1>,
    epsilon: f64,
) -> Result<(Tensor<D>, Tensor<D>)> {
    check_delta(&x, &delta)?;
    let sum = x + delta;
    Ok((sum.clone(), rms_norm_reference(sum, gamma, epsilon)?))
}

/// The WGSL kernel (`shaders/rms_norm.wgsl` with `add_rms_norm_bindings.wgsl`, one dispatch). An
/// error off wgpu, under autodiff and for non-f32 tensors.
pub fn wgpu_add_rms_norm<const D: usize>(x: Tensor<D>, delta: Tensor<D>, gamma: Tensor<1>, epsilon: f64) -> Result<(Tensor<D>, Tensor<D>)> {
    check(&x, &gamma, epsilon)?;
    check_delta(&x, &delta)?;
    if !crate::wgpu_inference_supports(&x.device(), &[x.dtype(), delta.dtype(), gamma.dtype()]) {
        return Err(crate::wgpu_inference_refusal("rms norm", &x.device(), x.dtype()));
    }
    #[cfg(feature = "wgpu")]
    return Ok(crate::wgpu::layer::add_rms_norm(x, delta, gamma, epsilon as f32));
    #[cfg(not(feature = "wgpu"))]
    Err(crate::wgpu_inference_refusal("rms norm", &x.device(), gamma.dtype()))
}

/// A residual connection and the RMSNorm of its result, `(x + delta, rms_norm(x + delta))`: one
/// WGSL dispatch for inference on wgpu, the add and [`rms_norm`] elsewhere.
pub fn add_rms_norm<const D: usize>(x: Tensor<D>, delta: Tensor<D>, gamma: Tensor<1>, epsilon: f64) -> Result<(Tensor<D>, Tensor<D>)> {
    check_delta(&x, &delta)?;
    if crate::wgpu_inference_supports(&x.device(), &[x.dtype(), delta.dtype(), gamma.dtype()]) {
        return wgpu_add_rms_norm(x, delta, gamma, epsilon);
    }
    let sum = x + delta;
    Ok((sum.clone(), rms_norm(sum, gamma, epsilon)?))
}

/// RMSNorm: fused when training on the CPU backend, one WGSL dispatch for inference on wgpu, the
/// reference elsewhere.
pub fn rms_norm<const D: usize>(x: Tensor<D>, gamma: Tensor<1>, epsilon: f64) -> Result<Tensor<D>> {
    let device = x.device();
    if device.is_autodiff() && crate::fused_cpu_supports(&device, &[x.dtype(), gamma.dtype()]) {
        return fused_rms_norm(x, gamma, epsilon);
    }
    if crate::wgpu_inference_supports(&device, &[x.dtype(), gamma.dtype()]) {
        return wgpu_rms_norm(x, gamma, epsilon);
    }
    rms_norm_reference(x, gamma, epsilon)
}
