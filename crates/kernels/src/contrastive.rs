//! Symmetric InfoNCE (CLIP-style) over in-batch negatives, the contrastive loss of ShifCon
//! (Zhang et al., ACL 2025; Radford et al. 2021 for the symmetric form).
//!
//! Given L2-normalised anchors `A` and positives `P` (`[n, d]`, row `i` of each a parallel pair):
//! - optional shift: `P' = P − mean(P) + mean(A)` (moves the positives into the anchors' region);
//! - logits `L = s · A P'ᵀ`;
//! - loss `= ½ · mean_i(lse_j L_ij − L_ii) + ½ · mean_j(lse_i L_ij − L_jj)`.
//!
//! [`contrastive_loss`] runs the fused WGSL kernels (`shaders/contrastive_*.wgsl`) on wgpu devices
//! and [`contrastive_loss_reference`] elsewhere; both are differentiable.

use burn::prelude::*;

use crate::error::{Result, shape_error};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContrastiveOptions {
    /// Logit scale `s` (1 / temperature). ShifCon's released script uses 1.0.
    pub scale: f32,
    /// Shift the positives' mean onto the anchors' mean first.
    pub shift: bool,
}

impl Default for ContrastiveOptions {
    fn default() -> Self {
        ContrastiveOptions { scale: 1.0, shift: true }
    }
}

pub(crate) fn check(anchors: &Tensor<2>, positives: &Tensor<2>, options: &ContrastiveOptions) -> Result<()> {
    let (a, p) = (anchors.dims(), positives.dims());
    if a != p {
        return Err(shape_error("contrastive loss", format!("anchors are {a:?} but positives {p:?}; they must match")));
    }
    if a[0] == 0 || a[1] == 0 {
        return Err(shape_error("contrastive loss", format!("empty input {a:?}")));
    }
    if !options.scale.is_finite() || options.scale <= 0.0 {
        return Err(shape_error("contrastive loss", format!("scale must be positive, got {}", options.scale)));
    }
    Ok(())
}

/// The shifted positives `P − mean(P) + mean(A)`.
pub fn shift_positives(anchors: &Tensor<2>, positives: Tensor<2>) -> Tensor<2> {
    let offset = anchors.clone().mean_dim(0) - positives.clone().mean_dim(0);
    positives + offset
}

/// The loss from plain tensor ops (materialises the `[n, n]` logits). Runs on every device and is
/// what the WGSL kernels are tested against.
///
/// # Shapes
/// `anchors, positives: [n, d]` → `[1]`.
pub fn contrastive_loss_reference(anchors: Tensor<2>, positives: Tensor<2>, options: ContrastiveOptions) -> Result<Tensor<1>> {
    check(&anchors, &positives, &options)?;
    let n = anchors.dims()[0];
    let positives = if options.shift { shift_positives(&anchors, positives) } else { positives };
    let logits = anchors.matmul(positives.transpose()).mul_scalar(options.scale);
    let diagonal = (logits.clone() * Tensor::eye(n, &logits.device())).sum_dim(1).squeeze_dim::<1>(1);
    let lse = |l: Tensor<2>, dim: usize| {
        let max = l.clone().max_dim(dim).detach();
        ((l - max.clone()).exp().sum_dim(dim).log() + max).reshape([n])
    };
    let rows = lse(logits.clone(), 1) - diagonal.clone();
    let cols = lse(logits, 0) - diagonal;
    Ok((rows.mean() + cols.mean()).mul_scalar(0.5))
}

/// The loss, through the fused WGSL kernels on wgpu devices and the reference elsewhere.
pub fn contrastive_loss(anchors: Tensor<2>, positives: Tensor<2>, options: ContrastiveOptions) -> Result<Tensor<1>> {
    check(&anchors, &positives, &options)?;
    #[cfg(feature = "wgpu")]
    if crate::is_wgpu(&anchors.device()) {
        return Ok(crate::wgpu::contrastive::loss(anchors, positives, options));
    }
    contrastive_loss_reference(anchors, positives, options)
}
