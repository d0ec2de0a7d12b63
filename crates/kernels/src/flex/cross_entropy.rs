//! [`crate::cpu::cross_entropy`] as a burn op on the CPU backend. Forward computes the loss and,
//! when the graph tracks it, the gradients at once (see the kernel); backward scales them by the
//! upstream gradient. A head weight that needs a gradient but was not a leaf parameter when the
//! op ran (so its need was not known) gets it from a recomputation in backward.

use std::sync::Arc;

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::prelude::*;

use super::{dense, tensor, values};
use crate::cpu::cross_entropy::{CrossEntropyOutput, linear_cross_entropy};
use crate::cpu::gemm::MatRef;
use crate::cross_entropy::HeadLayout;

/// The host data of one call: targets, row weights, and how the head is stored.
#[derive(Debug, Clone)]
pub(crate) struct Targets {
    pub ids: Arc<[u32]>,
    pub weights: Arc<[f32]>,
    pub layout: HeadLayout,
    /// Whether the head weight is a parameter that trains (known for leaves only).
    pub head_trains: bool,
    /// How the head's products multiply.
    pub products: crate::cpu::linear::Products,
}

#[backend_extension(Autodiff, Flex)]
pub trait FusedCrossEntropyBackend: Backend {
    /// `Σ_i w_i · (lse_i − z_{i,t_i})` of `z = hidden · headᵀ` → `[1]`.
    fn fused_linear_cross_entropy(hidden: FloatTensor<Self>, head: FloatTensor<Self>, targets: Targets) -> FloatTensor<Self>;
}

fn run(hidden: &FlexTensor, head: &FlexTensor, targets: &Targets, hidden_grad: bool, head_grad: bool) -> CrossEntropyOutput {
    let (hidden, head) = (dense(hidden), dense(head));
    let [n, d] = hidden.shape().dims::<2>();
    let [r, c] = head.shape().dims::<2>();
    let h = MatRef::row_major(values(&hidden), n, d);
    let w = MatRef::row_major(values(&head), r, c);
    let w = match targets.layout {
        HeadLayout::VocabRows => w,
        HeadLayout::VocabColumns => w.t(),
    };
    linear_cross_entropy(h, w, &targets.ids, &targets.weights, hidden_grad, head_grad, targets.products)
}

fn loss_tensor(out: &CrossEntropyOutput) -> FlexTensor {
    tensor(vec![out.loss as f32], &[1])
}

impl FusedCrossEntropyBackend for Flex {
    fn fused_linear_cross_entropy(hidden: FlexTensor, head: FlexTensor, targets: Targets) -> FlexTensor {
        loss_tensor(&run(&hidden, &head, &targets, false, false))
    }
}

#[derive(Debug, Clone)]
struct Saved {
    hidden: FlexTensor,
    head: FlexTensor,
    targets: Targets,
    /// `[n, d]`, formed in forward.
    hidden_grad: FlexTensor,
    /// In the head's own shape; `None` when its need was not known in forward.
    head_grad: Option<FlexTensor>,
}

#[derive(Debug)]
struct CrossEntropyBackward;

impl Backward<Flex, 2> for CrossEntropyBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [hidden_node, head_node] = ops.parents;
        let upstream = grads.consume::<Flex>(&ops.node);
        let factor = values(&dense(&upstream))[0];
        let s = ops.state;
        let scale = |t: FlexTensor| Flex::float_mul_scalar(t, factor.into());
        if let Some(node) = hidden_node {
            grads.register::<Flex>(node.id, scale(s.hidden_grad));
        }
        if let Some(node) = head_node {
            let head_grad = match s.head_grad {
                Some(g) => g,
                None => head_gradient(&run(&s.hidden, &s.head, &s.targets, false, true), &s.head, s.targets.layout),
            };
            grads.register::<Flex>(node.id, scale(head_grad));
        }
    }
}

/// The kernel's `[vocab, d]` head gradient in the head's own layout.
fn head_gradient(out: &CrossEntropyOutput, head: &FlexTensor, layout: HeadLayout) -> FlexTensor {
    let [r, c] = head.shape().dims::<2>();
    let g = out.weight_grad.clone().unwrap_or_else(|| unreachable!("asked for"));
    match layout {
        HeadLayout::VocabRows => tensor(g, &[r, c]),
        // [vocab = c, d = r] → [d, vocab]
        HeadLayout::VocabColumns => dense(&tensor(g, &[c, r]).transpose(0, 1)),
    }
}

impl<C: CheckpointStrategy> FusedCrossEntropyBackend for Autodiff<Flex, C> {
    fn fused_linear_cross_entropy(hidden: FloatTensor<Self>, head: FloatTensor<Self>, targets: Targets) -> FloatTensor<Self> {
        let (hidden, hidden_guard) = hidden.into_parts();
        let (head, head_guard) = head.into_parts();
        match CrossEntropyBackward.prepare::<C>([hidden_guard, head_guard]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = run(&hidden, &head, &targets, true, targets.head_trains);
                let [n, d] = hidden.shape().dims::<2>();
                let hidden_grad = tensor(out.hidden_grad.clone().unwrap_or_else(|| unreachable!("asked for")), &[n, d]);
                let head_grad = targets.head_trains.then(|| head_gradient(&out, &head, targets.layout));
                let loss = loss_tensor(&out);
                prep.finish(Saved { hidden, head, targets, hidden_grad, head_grad }, loss)
            }
            OpsKind::UnTracked(prep) => prep.finish(loss_tensor(&run(&hidden, &head, &targets, false, false))),
        }
    }
}

/// The loss through the fused op (CPU backend only; the public function checked everything).
pub(crate) fn loss(hidden: Tensor<2>, head: Tensor<2>, targets: Targets) -> Tensor<1> {
    let out = <Dispatch as FusedCrossEntropyBackend>::fused_linear_cross_entropy(hidden.into_dispatch(), head.into_dispatch(), targets);
    Tensor::from_dispatch(out)
}
