//! [`crate::cpu::rotary`] as a burn op on the CPU backend, with its own backward. The input is
//! read through its strides (the decoder's heads are a `swap_dims` view), never copied first.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::prelude::*;

use super::{dense, tensor, values};
use crate::cpu::rotary::{Heads, rotary_backward, rotary_forward};

#[backend_extension(Autodiff, Flex)]
pub trait FusedRotaryBackend: Backend {
    /// `x·cos + rotate(x)·sin`; `x: [batch, heads, seq, head_dim]`, tables `[batch, 1, seq, head_dim]`.
    fn fused_rotary(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// Runs `f` on `t` as a strided 4-D view (a dense copy only for negative strides).
fn with_heads<R>(t: &FlexTensor, f: impl FnOnce(Heads<'_>) -> R) -> R {
    let dims = t.shape().dims::<4>();
    let layout = t.layout();
    let strides: Option<Vec<usize>> = layout.strides().iter().map(|&s| usize::try_from(s).ok()).collect();
    if let Some(strides) = strides {
        let heads =
            Heads { data: &t.storage::<f32>()[layout.start_offset()..], dims, strides: [strides[0], strides[1], strides[2], strides[3]] };
        if heads.fits() {
            return f(heads);
        }
    }
    let t = dense(t);
    let [_, h, s, d] = dims;
    f(Heads { data: values(&t), dims, strides: [h * s * d, s * d, d, 1] })
}

fn forward(x: &FlexTensor, cos: &FlexTensor, sin: &FlexTensor) -> FlexTensor {
    let (cos, sin) = (dense(cos), dense(sin));
    let y = with_heads(x, |heads| rotary_forward(heads, values(&cos), values(&sin)));
    tensor(y, &x.shape().dims::<4>())
}

impl FusedRotaryBackend for Flex {
    fn fused_rotary(x: FlexTensor, cos: FlexTensor, sin: FlexTensor) -> FlexTensor {
        forward(&x, &cos, &sin)
    }
}

#[derive(Debug)]
struct RotaryBackward;

impl Backward<Flex, 1> for RotaryBackward {
    /// The dense cos and sin tables.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [x_node] = ops.parents;
        let upstream = grads.consume::<Flex>(&ops.node);
        let (cos, sin) = ops.state;
        if let Some(node) = x_node {
            let dims = upstream.shape().dims::<4>();
            let grad = with_heads(&upstream, |g| rotary_backward(g, values(&cos), values(&sin)));
            grads.register::<Flex>(node.id, tensor(grad, &dims));
        }
    }
}

impl<C: CheckpointStrategy> FusedRotaryBackend for Autodiff<Flex, C> {
    fn fused_rotary(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>) -> FloatTensor<Self> {
        let (x, x_guard) = x.into_parts();
        // The tables are constants of the pass (built from positions on the host).
        let (cos, sin) = (dense(&cos.into_parts().0), dense(&sin.into_parts().0));
        let y = forward(&x, &cos, &sin);
        match RotaryBackward.prepare::<C>([x_guard]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((cos, sin), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

/// RoPE through the fused op (CPU backend only; the public function checked everything).
pub(crate) fn rotary(x: Tensor<4>, cos: Tensor<4>, sin: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FusedRotaryBackend>::fused_rotary(x.into_dispatch(), cos.into_dispatch(), sin.into_dispatch()))
}
