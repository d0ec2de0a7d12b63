//! The LM head and the causal-LM loss in one op: `Σ_i w_i · (logsumexp(z_i) − z_{i,t_i})` with
//! `z = hidden · headᵀ`, the training loss of every method (`w_i` = 1 / number of predicted
//! tokens on counted rows, 0 on padding, prompts and document ends).
//!
//! [`linear_cross_entropy`] runs the fused CPU kernel (`cpu::cross_entropy`) on the CPU
//! backend — the `[rows, vocab]` logits never exist whole, and the gradients are formed in the
//! forward pass — and [`linear_cross_entropy_reference`] (plain tensor ops) elsewhere.

use burn::prelude::*;

pub use crate::cpu::linear::Products;
use crate::error::{Result, shape_error};

const OP: &str = "linear cross-entropy";

/// How the head weight holds the vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadLayout {
    /// `[vocab, d]`: a tied embedding.
    VocabRows,
    /// `[d, vocab]`: a burn `Linear` (`[in, out]`).
    VocabColumns,
}

fn check(hidden: &Tensor<2>, head: &Tensor<2>, layout: HeadLayout, targets: &[u32], row_weights: &[f32]) -> Result<usize> {
    let [n, d] = hidden.dims();
    let (vocab, hd) = match (layout, head.dims()) {
        (HeadLayout::VocabRows, [v, d]) => (v, d),
        (HeadLayout::VocabColumns, [d, v]) => (v, d),
    };
    if hd != d {
        return Err(shape_error(OP, format!("hidden states of width {d} but a head of width {hd} ({:?})", head.dims())));
    }
    if targets.len() != n || row_weights.len() != n {
        return Err(shape_error(OP, format!("{n} rows but {} targets and {} weights", targets.len(), row_weights.len())));
    }
    if let Some(t) = targets.iter().find(|&&t| t as usize >= vocab) {
        return Err(shape_error(OP, format!("target token {t} is outside the vocabulary of {vocab}")));
    }
    if let Some(w) = row_weights.iter().find(|w| !w.is_finite()) {
        return Err(shape_error(OP, format!("row weight {w} is not finite")));
    }
    Ok(vocab)
}

/// The loss from plain tensor ops (materialises the `[rows, vocab]` logits): runs on every
/// device, differentiable, and is what the fused kernel is tested against.
///
/// # Shapes
/// `hidden: [n, d]`, `head: [vocab, d]` or `[d, vocab]` (see [`HeadLayout`]) → `[1]`.
pub fn linear_cross_entropy_reference(
    hidden: Tensor<2>,
    head: Tensor<2>,
    layout: HeadLayout,
    targets: &[u32],
    row_weights: &[f32],
) -> Result<Tensor<1>> {
    check(&hidden, &head, layout, targets, row_weights)?;
    let device = hidden.device();
    let n = targets.len();
    let logits = match layout {
        HeadLayout::VocabRows => hidden.matmul(head.transpose()),
        HeadLayout::VocabColumns => hidden.matmul(head),
    };
    let max = logits.clone().max_dim(1).detach();
    let lse = (logits.clone() - max.clone()).exp().sum_dim(1).log() + max;
    let ids = Tensor::<2, Int>::from_data(TensorData::new(targets.iter().map(|&t| i64::from(t)).collect::<Vec<_>>(), [n, 1]), &device);
    let weights = Tensor::<2>::from_data(TensorData::new(row_weights.to_vec(), [n, 1]), &device);
    Ok(((lse - logits.gather(1, ids)) * weights).sum())
}

/// The fused CPU kernel, the head's products in `products`. An error off the CPU backend and for
/// non-f32 tensors.
pub fn fused_linear_cross_entropy(
    hidden: Tensor<2>,
    head: Tensor<2>,
    layout: HeadLayout,
    targets: &[u32],
    row_weights: &[f32],
    products: Products,
) -> Result<Tensor<1>> {
    check(&hidden, &head, layout, targets, row_weights)?;
    if !crate::fused_cpu_supports(&hidden.device(), &[hidden.dtype(), head.dtype()]) {
        return Err(crate::fused_cpu_refusal(OP, &hidden.device(), hidden.dtype()));
    }
    #[cfg(feature = "flex")]
    {
        // Only a leaf parameter says whether it trains; anything else gets its gradient from
        // a recomputation in backward, if it needs one (see `flex::cross_entropy`).
        let head_trains = head.is_require_grad();
        let targets =
            crate::flex::cross_entropy::Targets { ids: targets.into(), weights: row_weights.into(), layout, head_trains, products };
        Ok(crate::flex::cross_entropy::loss(hidden, head, targets))
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = (head, layout, products);
        Err(crate::fused_cpu_refusal(OP, &hidden.device(), hidden.dtype()))
    }
}

/// The loss: fused on the CPU backend (the head's products in `products`), the reference
/// elsewhere (f32 products).
pub fn linear_cross_entropy(
    hidden: Tensor<2>,
    head: Tensor<2>,
    layout: HeadLayout,
    targets: &[u32],
    row_weights: &[f32],
    products: Products,
) -> Result<Tensor<1>> {
    if crate::fused_cpu_supports(&hidden.device(), &[hidden.dtype(), head.dtype()]) {
        return fused_linear_cross_entropy(hidden, head, layout, targets, row_weights, products);
    }
    linear_cross_entropy_reference(hidden, head, layout, targets, row_weights)
}

/// `log softmax(logits)[target]` of each row from plain tensor ops (the target's logit minus the
/// max-shifted log-sum-exp): every device, differentiable, and what the fused pass is tested
/// against.
///
/// # Shapes
/// `logits: [n, vocab]`, `targets: [n]` → `[n]`.
pub fn target_log_probs_reference(logits: Tensor<2>, targets: &[u32]) -> Result<Tensor<1>> {
    let n = check_targets(&logits, targets)?;
    let ids =
        Tensor::<2, Int>::from_data(TensorData::new(targets.iter().map(|&t| i64::from(t)).collect::<Vec<_>>(), [n, 1]), &logits.device());
    let max = logits.clone().max_dim(1).detach();
    let log_sum_exp = (logits.clone() - max.clone()).exp().sum_dim(1).log() + max;
    Ok((logits.gather(1, ids) - log_sum_exp).squeeze_dim(1))
}

/// [`target_log_probs_reference`]'s values: one host pass per row on the CPU backend without
/// autodiff ([`crate::cpu::cross_entropy::target_log_probs`]: no shifted copy, exponentials or
/// log-softmax of the `[n, vocab]` logits are stored — at scoring's 256 × 49 152 each is 50 MB),
/// the reference elsewhere.
pub fn target_log_probs(logits: Tensor<2>, targets: &[u32]) -> Result<Tensor<1>> {
    let device = logits.device();
    if device.is_autodiff() || !crate::fused_cpu_supports(&device, &[logits.dtype()]) {
        return target_log_probs_reference(logits, targets);
    }
    let n = check_targets(&logits, targets)?;
    let vocab = logits.dims()[1];
    let values = crate::cpu_values(logits, "target log-probabilities")?;
    Ok(Tensor::from_data(TensorData::new(crate::cpu::cross_entropy::target_log_probs(&values, vocab, targets), [n]), &device))
}

fn check_targets(logits: &Tensor<2>, targets: &[u32]) -> Result<usize> {
    const OP: &str = "target log-probabilities";
    let [n, vocab] = logits.dims();
    if targets.len() != n || vocab == 0 {
        return Err(shape_error(OP, format!("{} targets for logits of shape {:?}", targets.len(), logits.dims())));
    }
    if let Some(&t) = targets.iter().find(|&&t| t as usize >= vocab) {
        return Err(shape_error(OP, format!("target token {t} is outside the vocabulary of {vocab}")));
    }
    Ok(n)
}
