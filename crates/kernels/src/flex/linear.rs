//! [`crate::cpu::linear`] as burn ops on the CPU backend, with their own backward: a plain
//! projection and one with a LoRA branch.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::prelude::*;

use super::{dense, tensor, values};
use crate::cpu::gemm::MatRef;
use crate::cpu::linear::{LinearGrads, LoraFactors, Products, Wanted, linear_backward, linear_forward};

#[backend_extension(Autodiff, Flex)]
pub trait FusedLinearBackend: Backend {
    /// `x·w`, `x: [rows, d_in]`, `w: [d_in, d_out]`.
    fn fused_linear(x: FloatTensor<Self>, w: FloatTensor<Self>, products: Products) -> FloatTensor<Self>;
    /// `x·w + scale·(x·a)·b`, `a: [d_in, r]`, `b: [r, d_out]`.
    fn fused_lora_linear(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        scale: f32,
        products: Products,
    ) -> FloatTensor<Self>;
}

/// A dense 2-D tensor as a matrix view.
fn mat(t: &FlexTensor) -> MatRef<'_> {
    let [rows, cols] = t.shape().dims::<2>();
    MatRef::row_major(values(t), rows, cols)
}

fn rows_cols(x: &FlexTensor, w: &FlexTensor) -> [usize; 2] {
    [x.shape().dims::<2>()[0], w.shape().dims::<2>()[1]]
}

impl FusedLinearBackend for Flex {
    fn fused_linear(x: FlexTensor, w: FlexTensor, products: Products) -> FlexTensor {
        let (x, w) = (dense(&x), dense(&w));
        tensor(linear_forward(mat(&x), mat(&w), None, products).0, &rows_cols(&x, &w))
    }

    fn fused_lora_linear(x: FlexTensor, w: FlexTensor, a: FlexTensor, b: FlexTensor, scale: f32, products: Products) -> FlexTensor {
        let (x, w, a, b) = (dense(&x), dense(&w), dense(&a), dense(&b));
        let lora = LoraFactors { a: mat(&a), b: mat(&b), scale };
        tensor(linear_forward(mat(&x), mat(&w), Some(lora), products).0, &rows_cols(&x, &w))
    }
}

#[derive(Debug, Clone)]
struct Saved {
    x: FlexTensor,
    w: FlexTensor,
    /// `a`, `b`, `x·a` and the scale of a LoRA branch.
    lora: Option<(FlexTensor, FlexTensor, FlexTensor, f32)>,
    /// The forward's products, which the backward's `g·Wᵀ` repeats.
    products: Products,
}

fn register(grads: &mut Gradients, node: Option<NodeId>, grad: Option<Vec<f32>>, like: &FlexTensor) {
    if let (Some(node), Some(grad)) = (node, grad) {
        grads.register::<Flex>(node, tensor(grad, like.shape().as_slice()));
    }
}

fn backward_of(s: &Saved, upstream: &FlexTensor, wanted: Wanted) -> LinearGrads {
    let lora = s.lora.as_ref().map(|(a, b, xa, scale)| (LoraFactors { a: mat(a), b: mat(b), scale: *scale }, values(xa)));
    linear_backward(mat(&s.x), mat(&s.w), lora, mat(upstream), wanted, s.products)
}

#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 2> for LinearBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [x_node, w_node] = ops.parents;
        let upstream = dense(&grads.consume::<Flex>(&ops.node));
        let wanted = Wanted { x: x_node.is_some(), w: w_node.is_some(), a: false, b: false };
        let g = backward_of(&ops.state, &upstream, wanted);
        register(grads, x_node.map(|n| n.id), g.x, &ops.state.x);
        register(grads, w_node.map(|n| n.id), g.w, &ops.state.w);
    }
}

#[derive(Debug)]
struct LoraLinearBackward;

impl Backward<Flex, 4> for LoraLinearBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [x_node, w_node, a_node, b_node] = ops.parents;
        let upstream = dense(&grads.consume::<Flex>(&ops.node));
        let wanted = Wanted { x: x_node.is_some(), w: w_node.is_some(), a: a_node.is_some(), b: b_node.is_some() };
        let s = &ops.state;
        let g = backward_of(s, &upstream, wanted);
        register(grads, x_node.map(|n| n.id), g.x, &s.x);
        register(grads, w_node.map(|n| n.id), g.w, &s.w);
        if let Some((a, b, _, _)) = &s.lora {
            register(grads, a_node.map(|n| n.id), g.a, a);
            register(grads, b_node.map(|n| n.id), g.b, b);
        }
    }
}

impl<C: CheckpointStrategy> FusedLinearBackend for Autodiff<Flex, C> {
    fn fused_linear(x: FloatTensor<Self>, w: FloatTensor<Self>, products: Products) -> FloatTensor<Self> {
        let (x, x_guard) = x.into_parts();
        let (w, w_guard) = w.into_parts();
        let (x, w) = (dense(&x), dense(&w));
        let y = tensor(linear_forward(mat(&x), mat(&w), None, products).0, &rows_cols(&x, &w));
        match LinearBackward.prepare::<C>([x_guard, w_guard]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(Saved { x, w, lora: None, products }, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fused_lora_linear(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        scale: f32,
        products: Products,
    ) -> FloatTensor<Self> {
        let (x, x_guard) = x.into_parts();
        let (w, w_guard) = w.into_parts();
        let (a, a_guard) = a.into_parts();
        let (b, b_guard) = b.into_parts();
        let (x, w, a, b) = (dense(&x), dense(&w), dense(&a), dense(&b));
        let (y, xa) = linear_forward(mat(&x), mat(&w), Some(LoraFactors { a: mat(&a), b: mat(&b), scale }), products);
        let y = tensor(y, &rows_cols(&x, &w));
        match LoraLinearBackward.prepare::<C>([x_guard, w_guard, a_guard, b_guard]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let xa = tensor(xa.unwrap_or_default(), &[x.shape().dims::<2>()[0], a.shape().dims::<2>()[1]]);
                prep.finish(Saved { x, w, lora: Some((a, b, xa, scale)), products }, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

/// `x·w` through the fused op (CPU backend only; the public function checked everything).
pub(crate) fn linear(x: Tensor<2>, w: Tensor<2>, products: Products) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as FusedLinearBackend>::fused_linear(x.into_dispatch(), w.into_dispatch(), products))
}

/// `x·w + scale·(x·a)·b` through the fused op (as [`linear`]).
pub(crate) fn lora_linear(x: Tensor<2>, w: Tensor<2>, a: Tensor<2>, b: Tensor<2>, scale: f32, products: Products) -> Tensor<2> {
    let out = <Dispatch as FusedLinearBackend>::fused_lora_linear(
        x.into_dispatch(),
        w.into_dispatch(),
        a.into_dispatch(),
        b.into_dispatch(),
        scale,
        products,
    );
    Tensor::from_dispatch(out)
}
