//! The gate of the SwiGLU feed-forward block, `silu(gate) · up`.
//!
//! [`swiglu`] runs the fused CPU kernel (`cpu::swiglu`, one pass forward and one backward, with
//! its own autodiff step) on the CPU backend, training and inference, [`wgpu_swiglu`] (one WGSL
//! dispatch, `shaders/swiglu.wgsl`) for inference on wgpu, and [`swiglu_reference`] — burn's
//! `silu` and a product, the decoder's path before — everywhere else.

use burn::prelude::*;
use burn::tensor::activation::silu;

use crate::error::{Result, shape_error};

fn check(gate: &Tensor<3>, up: &Tensor<3>) -> Result<()> {
    if gate.dims() != up.dims() {
        return Err(shape_error("swiglu", format!("gate {:?} and up {:?} must have the same shape", gate.dims(), up.dims())));
    }
    Ok(())
}

/// `silu(gate) · up` from burn's ops: every device, and what the fused kernel is tested against.
pub fn swiglu_reference(gate: Tensor<3>, up: Tensor<3>) -> Result<Tensor<3>> {
    check(&gate, &up)?;
    Ok(silu(gate) * up)
}

/// The fused CPU kernel. An error off the CPU backend and for non-f32 tensors.
pub fn fused_swiglu(gate: Tensor<3>, up: Tensor<3>) -> Result<Tensor<3>> {
    check(&gate, &up)?;
    if !crate::fused_cpu_supports(&gate.device(), &[gate.dtype(), up.dtype()]) {
        return Err(crate::fused_cpu_refusal("swiglu", &gate.device(), gate.dtype()));
    }
    #[cfg(feature = "flex")]
    return Ok(crate::flex::swiglu::swiglu(gate, up));
    #[cfg(not(feature = "flex"))]
    Err(crate::fused_cpu_refusal("swiglu", &gate.device(), up.dtype()))
}

/// The WGSL kernel (`shaders/swiglu.wgsl`, one dispatch). An error off wgpu, under autodiff and
/// for non-f32 tensors.
pub fn wgpu_swiglu(gate: Tensor<3>, up: Tensor<3>) -> Result<Tensor<3>> {
    check(&gate, &up)?;
    if !crate::wgpu_inference_supports(&gate.device(), &[gate.dtype(), up.dtype()]) {
        return Err(crate::wgpu_inference_refusal("swiglu", &gate.device(), gate.dtype()));
    }
    if gate.shape().num_elements() == 0 {
        return Ok(gate);
    }
    #[cfg(feature = "wgpu")]
    return Ok(crate::wgpu::layer::swiglu(gate, up));
    #[cfg(not(feature = "wgpu"))]
    Err(crate::wgpu_inference_refusal("swiglu", &up.device(), up.dtype()))
}

/// `silu(gate) · up`: fused on the CPU backend, one WGSL dispatch for inference on wgpu, the
/// reference elsewhere.
pub fn swiglu(gate: Tensor<3>, up: Tensor<3>) -> Result<Tensor<3>> {
    let (device, dtypes) = (gate.device(), [gate.dtype(), up.dtype()]);
    if crate::fused_cpu_supports(&device, &dtypes) {
        return fused_swiglu(gate, up);
    }
    if crate::wgpu_inference_supports(&device, &dtypes) {
        return wgpu_swiglu(gate, up);
    }
    swiglu_reference(gate, up)
}
