//! Rotary position embedding of queries and keys: `x·cos + rotate(x)·sin` with
//! `rotate([a, b]) = [−b, a]` over the halves of each head (HF `apply_rotary_pos_emb`; the tables
//! come from `rosetta_model::nn::rotary`).
//!
//! [`rotary`] runs the fused CPU kernel (`cpu::rotary`: one pass forward, one backward, reading
//! the heads through their strides) on the CPU backend, [`wgpu_rotary`] (one WGSL dispatch,
//! `shaders/rotary.wgsl`, also reading the heads in place) for inference on wgpu, and
//! [`rotary_reference`] — the tensor ops the decoder used before — everywhere else.

use burn::prelude::*;

use crate::error::{Result, shape_error};

fn check(x: &Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Result<()> {
    let [b, _, s, d] = x.dims();
    if d % 2 != 0 {
        return Err(shape_error("rotary", format!("head size {d} is odd; rotary embedding rotates pairs of halves")));
    }
    for (name, t) in [("cos", cos), ("sin", sin)] {
        if t.dims() != [b, 1, s, d] {
            return Err(shape_error("rotary", format!("the {name} table is {:?} but must be {:?}", t.dims(), [b, 1, s, d])));
        }
    }
    Ok(())
}

/// The rotation from tensor ops: every device, and what the fused kernel is tested against.
///
/// # Shapes
/// `x: [batch, heads, seq, head_dim]`, `cos`/`sin: [batch, 1, seq, head_dim]`.
pub fn rotary_reference(x: Tensor<4>, cos: Tensor<4>, sin: Tensor<4>) -> Result<Tensor<4>> {
    check(&x, &cos, &sin)?;
    let [b, h, s, d] = x.dims();
    let half = d / 2;
    let first = x.clone().slice([0..b, 0..h, 0..s, 0..half]);
    let second = x.clone().slice([0..b, 0..h, 0..s, half..d]);
    let rotated = Tensor::cat(vec![second.neg(), first], 3);
    Ok(x * cos + rotated * sin)
}

/// The fused CPU kernel. An error off the CPU backend and for non-f32 tensors. The tables are
/// constants of a pass (built from positions on the host): no gradient flows to them.
pub fn fused_rotary(x: Tensor<4>, cos: Tensor<4>, sin: Tensor<4>) -> Result<Tensor<4>> {
    check(&x, &cos, &sin)?;
    if !crate::fused_cpu_supports(&x.device(), &[x.dtype(), cos.dtype(), sin.dtype()]) {
        return Err(crate::fused_cpu_refusal("rotary", &x.device(), x.dtype()));
    }
    #[cfg(feature = "flex")]
    return Ok(crate::flex::rotary::rotary(x, cos, sin));
    #[cfg(not(feature = "flex"))]
    Err(crate::fused_cpu_refusal("rotary", &cos.device(), sin.dtype()))
}

/// The WGSL kernel (`shaders/rotary.wgsl`, one dispatch reading the heads through their strides).
/// An error off wgpu, under autodiff and for non-f32 tensors.
pub fn wgpu_rotary(x: Tensor<4>, cos: Tensor<4>, sin: Tensor<4>) -> Result<Tensor<4>> {
    check(&x, &cos, &sin)?;
    if !crate::wgpu_inference_supports(&x.device(), &[x.dtype(), cos.dtype(), sin.dtype()]) {
        return Err(crate::wgpu_inference_refusal("rotary", &x.device(), x.dtype()));
    }
    if x.shape().num_elements() == 0 {
        return Ok(x);
    }
    #[cfg(feature = "wgpu")]
    return Ok(crate::wgpu::layer::rotary(x, cos, sin));
    #[cfg(not(feature = "wgpu"))]
    Err(crate::wgpu_inference_refusal("rotary", &cos.device(), sin.dtype()))
}

/// RoPE: fused on the CPU backend, one WGSL dispatch for inference on wgpu, the reference
/// elsewhere.
pub fn rotary(x: Tensor<4>, cos: Tensor<4>, sin: Tensor<4>) -> Result<Tensor<4>> {
    // The tables are f32; heads computed in bf16 or f16 (mixed-precision training) rotate by
    // tables cast to their type, as the reference's products need one dtype.
    let (cos, sin) = (crate::cast_like(cos, &x), crate::cast_like(sin, &x));
    let (device, dtypes) = (x.device(), [x.dtype(), cos.dtype(), sin.dtype()]);
    if crate::fused_cpu_supports(&device, &dtypes) {
        return fused_rotary(x, cos, sin);
    }
    if crate::wgpu_inference_supports(&device, &dtypes) {
        return wgpu_rotary(x, cos, sin);
    }
    rotary_reference(x, cos, sin)
}
