//! Scaled dot-product attention of the decoder: grouped key/value heads, causal or an explicit
//! blocked-key mask (padding, packed documents, sliding windows).
//!
//! [`attention`] runs the fused CPU kernel (`cpu::attention`, with its own backward) on the CPU
//! backend: under autodiff, where burn 0.22 would otherwise compose attention from a dozen
//! differentiable ops and keep the `[seq, kv_len]` probabilities of every head for backward, and
//! for inference too, where its causal query blocks and in-place grouped heads beat burn's own
//! CPU attention (measured in `reports/training/`). For causal inference on wgpu it runs
//! [`wgpu_attention`], one WGSL dispatch (`shaders/attention.wgsl`) where burn launches about
//! seventeen. It runs [`attention_reference`] — burn's attention op after repeating the key/value
//! heads — everywhere else.

use burn::prelude::*;
use burn::tensor::module::attention as burn_attention;
use burn::tensor::ops::AttentionModuleOptions;

use crate::error::{Result, shape_error};

/// Scores one head may hold in the fused kernel (`seq × kv_len`, f32): 2²⁶ = 256 MB per task.
/// Longer calls run the reference (see [`attention`]); [`fused_attention`] refuses them.
pub const FUSED_MAX_SCORES: usize = 1 << 26;

const OP: &str = "attention";

/// `[batch, heads, seq, head_dim]`, `[batch, kv_heads, kv_len, head_dim]` twice, and the
/// optional `[batch, 1, seq, kv_len]` mask (true = blocked). Without a mask, attention is causal
/// with the queries at the end of the keys.
fn check(q: &Tensor<4>, k: &Tensor<4>, v: &Tensor<4>, mask: Option<&Tensor<4, Bool>>) -> Result<[usize; 6]> {
    let [b, h, s, d] = q.dims();
    let [kb, kvh, t, kd] = k.dims();
    if k.dims() != v.dims() {
        return Err(shape_error(OP, format!("keys are {:?} but values {:?}; they must match", k.dims(), v.dims())));
    }
    if kb != b || kd != d {
        return Err(shape_error(OP, format!("queries {:?} and keys {:?} differ in batch or head size", q.dims(), k.dims())));
    }
    if kvh == 0 || h % kvh != 0 {
        return Err(shape_error(OP, format!("{h} query heads cannot share {kvh} key/value heads (it must divide them)")));
    }
    if t < s {
        return Err(shape_error(OP, format!("{s} queries over {t} keys: queries must be the last of the keys")));
    }
    if let Some(m) = mask
        && m.dims() != [b, 1, s, t]
    {
        return Err(shape_error(OP, format!("the mask is {:?} but must be {:?} for these queries and keys", m.dims(), [b, 1, s, t])));
    }
    Ok([b, h, kvh, s, t, d])
}

/// Repeats each key/value head for the query heads of its group.
fn repeat_kv(t: Tensor<4>, heads: usize) -> Tensor<4> {
    let [b, kvh, len, d] = t.dims();
    if kvh == heads {
        return t;
    }
    t.unsqueeze_dim::<5>(2).expand([b, kvh, heads / kvh, len, d]).reshape([b, heads, len, d])
}

/// Attention from burn's op on repeated key/value heads: runs on every device, and is what the
/// fused kernel is tested against.
pub fn attention_reference(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: Option<Tensor<4, Bool>>) -> Result<Tensor<4>> {
    let [b, h, _, s, t, _] = check(&q, &k, &v, mask.as_ref())?;
    let (k, v) = (repeat_kv(k, h), repeat_kv(v, h));
    // burn's causal flag aligns the last query with the last key, as a cache needs.
    let mask = mask.map(|m| m.expand([b, h, s, t]));
    let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: mask.is_none() };
    Ok(burn_attention(q, k, v, mask, None, options))
}

/// The fused CPU kernel with its own backward. An error off the CPU backend, for non-f32
/// tensors, and beyond [`FUSED_MAX_SCORES`].
pub fn fused_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: Option<Tensor<4, Bool>>) -> Result<Tensor<4>> {
    let [_, _, _, s, t, d] = check(&q, &k, &v, mask.as_ref())?;
    fused_supported(&q, &k, &v, s, t)?;
    #[cfg(feature = "flex")]
    {
        let blocked = match mask {
            Some(m) => Some(host_mask(m)?),
            None => None,
        };
        let scale = 1.0 / (d as f32).sqrt();
        Ok(crate::flex::attention::attention(q, k, v, crate::flex::attention::MaskAndScale { blocked, scale }))
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = (k, v, mask, d);
        Err(shape_error(OP, "the fused kernel needs the CPU backend (feature `flex`)"))
    }
}

fn fused_supported(q: &Tensor<4>, k: &Tensor<4>, v: &Tensor<4>, s: usize, t: usize) -> Result<()> {
    if !crate::fused_cpu_supports(&q.device(), &[q.dtype(), k.dtype(), v.dtype()]) {
        return Err(crate::fused_cpu_refusal(OP, &q.device(), q.dtype()));
    }
    if s.saturating_mul(t) > FUSED_MAX_SCORES {
        return Err(shape_error(
            OP,
            format!("{s} queries × {t} keys exceed the fused kernel's {FUSED_MAX_SCORES} scores per head; use shorter sequences"),
        ));
    }
    Ok(())
}

#[cfg(feature = "flex")]
#[allow(clippy::disallowed_methods, reason = "the CPU backend's reads complete at once, also in the browser")]
fn host_mask(mask: Tensor<4, Bool>) -> Result<std::sync::Arc<[bool]>> {
    let values = mask.into_data().try_to_vec::<bool>().map_err(|e| shape_error(OP, format!("unreadable mask: {e:?}")))?;
    Ok(values.into())
}

/// Scores the WGSL kernel keeps in its scratch buffer (`batch · heads · seq × keys`, f32): 2²⁵ =
/// 128 MB, WebGPU's default limit on one storage binding. Longer calls run the reference.
pub const WGPU_MAX_SCORES: usize = 1 << 25;

/// The WGSL kernel (`shaders/attention.wgsl`, one dispatch): causal attention (no mask) for
/// inference on wgpu. An error elsewhere, under autodiff, for non-f32 tensors, with a mask, and
/// beyond [`WGPU_MAX_SCORES`].
pub fn wgpu_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Result<Tensor<4>> {
    let [b, h, _, s, t, _] = check(&q, &k, &v, None)?;
    wgpu_supported(&q, &k, &v, b * h * s, t)?;
    if q.shape().num_elements() == 0 {
        return Ok(q);
    }
    #[cfg(feature = "wgpu")]
    return Ok(crate::wgpu::layer::attention(q, k, v));
    #[cfg(not(feature = "wgpu"))]
    Err(crate::wgpu_inference_refusal(OP, &k.device(), v.dtype()))
}

fn wgpu_supported(q: &Tensor<4>, k: &Tensor<4>, v: &Tensor<4>, rows: usize, t: usize) -> Result<()> {
    if !crate::wgpu_inference_supports(&q.device(), &[q.dtype(), k.dtype(), v.dtype()]) {
        return Err(crate::wgpu_inference_refusal(OP, &q.device(), q.dtype()));
    }
    if rows.saturating_mul(t) > WGPU_MAX_SCORES {
        return Err(shape_error(
            OP,
            format!("{rows} query rows × {t} keys exceed the WGSL kernel's {WGPU_MAX_SCORES} scores; use shorter sequences"),
        ));
    }
    Ok(())
}

/// Attention for the decoder: the fused kernel on the CPU backend (when the call fits it), the
/// WGSL kernel for causal inference on wgpu (when it fits), the reference elsewhere.
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: Option<Tensor<4, Bool>>) -> Result<Tensor<4>> {
    let [b, h, _, s, t, _] = check(&q, &k, &v, mask.as_ref())?;
    if fused_supported(&q, &k, &v, s, t).is_ok() {
        return fused_attention(q, k, v, mask);
    }
    if mask.is_none() && wgpu_supported(&q, &k, &v, b * h * s, t).is_ok() {
        return wgpu_attention(q, k, v);
    }
    attention_reference(q, k, v, mask)
}
