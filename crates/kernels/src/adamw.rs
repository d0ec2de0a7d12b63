//! One AdamW step over a parameter tensor: Loshchilov & Hutter, "Decoupled Weight Decay
//! Regularization" (ICLR 2019), as burn's `AdamW` computes it (no AMSGrad, no cautious decay):
//!
//! ```text
//! m' = β1·m + (1 − β1)·g     v' = β2·v + (1 − β2)·g²
//! θ' = θ·(1 − lr·λ) − lr · (m' / (1 − β1^t)) / (√(v' / (1 − β2^t)) + ε)
//! ```
//!
//! [`adamw_step_reference`] is burn's formula op for op, on every device; [`wgpu_adamw_step`] is
//! one WGSL dispatch (`shaders/adamw.wgsl`) for f32 tensors on wgpu, where a training step is bound
//! by launches and burn composes about fifteen a tensor (`reports/training/README.md`);
//! [`adamw_step`] picks. The trainer reaches them through `rosetta_train::optimizer::FusedAdamW`.

use burn::prelude::*;

use crate::error::{Result, shape_error};

const OP: &str = "adamw";

/// The optimizer's constants (the learning rate comes with each step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWHyper {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub weight_decay: f32,
}

/// A tensor's moments and the steps they aggregate.
#[derive(Debug, Clone)]
pub struct Moments<const D: usize> {
    pub first: Tensor<D>,
    pub second: Tensor<D>,
    pub time: usize,
}

fn check<const D: usize>(param: &Tensor<D>, grad: &Tensor<D>, moments: Option<&Moments<D>>) -> Result<()> {
    let shape = param.dims();
    let mut shapes = vec![("gradient", grad.dims())];
    if let Some(m) = moments {
        shapes.extend([("first moment", m.first.dims()), ("second moment", m.second.dims())]);
    }
    for (what, dims) in shapes {
        if dims != shape {
            return Err(shape_error(OP, format!("the {what} {dims:?} does not match the parameter {shape:?}")));
        }
    }
    Ok(())
}

/// burn's `AdamW::step` (its momentum transform, then the decoupled decay), op for op: every
/// device, and what the WGSL kernel is tested against.
pub fn adamw_step_reference<const D: usize>(
    lr: f64,
    param: Tensor<D>,
    grad: Tensor<D>,
    moments: Option<Moments<D>>,
    hyper: AdamWHyper,
) -> Result<(Tensor<D>, Moments<D>)> {
    check(&param, &grad, moments.as_ref())?;
    let (f1, f2) = (1.0 - hyper.beta_1, 1.0 - hyper.beta_2);
    let moments = match moments {
        Some(m) => Moments {
            first: m.first.mul_scalar(hyper.beta_1).add(grad.clone().mul_scalar(f1)),
            second: m.second.mul_scalar(hyper.beta_2).add(grad.square().mul_scalar(f2)),
            time: m.time + 1,
        },
        None => Moments { first: grad.clone().mul_scalar(f1), second: grad.square().mul_scalar(f2), time: 1 },
    };
    let (c1, c2) = bias_corrections(hyper, moments.time);
    let delta = moments.first.clone().div_scalar(c1).div(moments.second.clone().div_scalar(c2).sqrt().add_scalar(hyper.epsilon));
    let decay = lr * hyper.weight_decay as f64;
    let decayed = if decay == 0.0 { param } else { param.mul_scalar(1.0 - decay) };
    Ok((decayed - delta.mul_scalar(lr), moments))
}

/// `1 − β1^t` and `1 − β2^t`, in f32 as burn computes them.
fn bias_corrections(hyper: AdamWHyper, time: usize) -> (f32, f32) {
    let t = time.min(i32::MAX as usize) as i32;
    (1f32 - hyper.beta_1.powi(t), 1f32 - hyper.beta_2.powi(t))
}

/// Whether the WGSL kernel takes this step: f32 tensors on wgpu, without autodiff (an
/// optimizer's tensors never have it).
pub fn wgpu_supported<const D: usize>(param: &Tensor<D>, grad: &Tensor<D>) -> bool {
    crate::wgpu_inference_supports(&param.device(), &[param.dtype(), grad.dtype()])
}

/// The WGSL kernel (`shaders/adamw.wgsl`, one dispatch; zero moments are made for the first
/// step). An error off wgpu and for non-f32 tensors.
pub fn wgpu_adamw_step<const D: usize>(
    lr: f64,
    param: Tensor<D>,
    grad: Tensor<D>,
    moments: Option<Moments<D>>,
    hyper: AdamWHyper,
) -> Result<(Tensor<D>, Moments<D>)> {
    check(&param, &grad, moments.as_ref())?;
    if !wgpu_supported(&param, &grad) {
        return Err(crate::wgpu_inference_refusal(OP, &param.device(), param.dtype()));
    }
    let (first, second, time) = match moments {
        Some(m) => (m.first, m.second, m.time + 1),
        None => (param.zeros_like(), param.zeros_like(), 1),
    };
    let (c1, c2) = bias_corrections(hyper, time);
    let decay_factor = (1.0 - lr * hyper.weight_decay as f64) as f32;
    let constants = [lr as f32, hyper.beta_1, hyper.beta_2, hyper.epsilon, decay_factor, c1, c2];
    if param.shape().num_elements() == 0 {
        return Ok((param, Moments { first, second, time }));
    }
    #[cfg(feature = "wgpu")]
    {
        let (param, first, second) = crate::wgpu::adamw::adamw_step(param, grad, first, second, constants);
        Ok((param, Moments { first, second, time }))
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = (grad, first, second, constants);
        Err(crate::wgpu_inference_refusal(OP, &param.device(), param.dtype()))
    }
}

/// One AdamW step: the WGSL kernel where it runs, the reference elsewhere.
pub fn adamw_step<const D: usize>(
    lr: f64,
    param: Tensor<D>,
    grad: Tensor<D>,
    moments: Option<Moments<D>>,
    hyper: AdamWHyper,
) -> Result<(Tensor<D>, Moments<D>)> {
    if wgpu_supported(&param, &grad) {
        return wgpu_adamw_step(lr, param, grad, moments, hyper);
    }
    adamw_step_reference(lr, param, grad, moments, hyper)
}
