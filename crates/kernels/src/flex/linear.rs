//! [`crate::cpu::linear`] as burn ops on the CPU backend, with their own backward: a plain
//! projection and one with a LoRA branch, each over a dense weight (a tensor, trainable) or a
//! packed one (quantized blocks, frozen: the QLoRA base of Dettmers et al. 2023). A packed weight
//! is dequantised for each product and dropped after it; backward keeps the packed blocks, not
//! the f32 values, so a training step holds no f32 copy of a frozen base.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::prelude::*;
use std::sync::Arc;

use super::{dense, tensor, values};
use crate::cpu::gemm::MatRef;
use crate::cpu::linear::{LinearGrads, LoraFactors, Products, Wanted, input_gradient, linear_backward, linear_forward};
use crate::quant::PackedMatrix;

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
    /// `x·Wᵀ` for a packed `W: [d_out, d_in]` (frozen: no gradient).
    fn fused_packed_linear(x: FloatTensor<Self>, w: Arc<PackedMatrix>, products: Products) -> FloatTensor<Self>;
    /// `x·Wᵀ + scale·(x·a)·b` for a packed, frozen `W: [d_out, d_in]`.
    fn fused_packed_lora_linear(
        x: FloatTensor<Self>,
        w: Arc<PackedMatrix>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        scale: f32,
        products: Products,
    ) -> FloatTensor<Self>;
}

/// A packed weight's values, `[d_out, d_in]` row-major, dequantised in slices of rows on
/// rayon's pool with `has_threads` (in order otherwise).
fn dequantized(w: &PackedMatrix) -> Vec<f32> {
    const SLICE_ROWS: usize = 64;
    let cols = w.cols();
    let mut out = vec![0f32; w.rows() * cols];
    let fill = |(i, slice): (usize, &mut [f32])| {
        let start = i * SLICE_ROWS;
        w.dequantize_rows_into(start..start + slice.len() / cols, slice);
    };
    #[cfg(has_threads)]
    {
        use rayon::prelude::*;
        crate::cpu::pool::keep_awake();
        out.par_chunks_mut(SLICE_ROWS * cols).enumerate().for_each(fill);
    }
    #[cfg(not(has_threads))]
    out.chunks_mut(SLICE_ROWS * cols).enumerate().for_each(fill);
    out
}

/// The weight of a product, as [`linear_forward`] and [`linear_backward`] read it.
#[derive(Debug, Clone)]
enum SavedWeight {
    /// `[d_in, d_out]`, burn's `Linear` layout.
    Dense(FlexTensor),
    /// `[d_out, d_in]`, dequantised when a product needs it.
    Packed(Arc<PackedMatrix>),
}

impl SavedWeight {
    /// The weight's values for one product, and how to view them as `[d_in, d_out]`.
    fn values(&self) -> WeightValues<'_> {
        match self {
            SavedWeight::Dense(w) => WeightValues::Dense(w),
            SavedWeight::Packed(w) => WeightValues::of_packed(w),
        }
    }
}

enum WeightValues<'a> {
    Dense(&'a FlexTensor),
    Dequantized(Vec<f32>, usize, usize),
}

impl WeightValues<'_> {
    fn of_packed(w: &PackedMatrix) -> WeightValues<'static> {
        WeightValues::Dequantized(dequantized(w), w.rows(), w.cols())
    }

    /// As `[d_in, d_out]`: a dequantised weight is the transposed view of its `[d_out, d_in]`
    /// values, which the products read in place.
    fn mat(&self) -> MatRef<'_> {
        match self {
            WeightValues::Dense(w) => mat(w),
            WeightValues::Dequantized(values, d_out, d_in) => MatRef::row_major(values, *d_out, *d_in).t(),
        }
    }
}

/// A dense 2-D tensor as a matrix view.
fn mat(t: &FlexTensor) -> MatRef<'_> {
    let [rows, cols] = t.shape().dims::<2>();
    MatRef::row_major(values(t), rows, cols)
}

impl FusedLinearBackend for Flex {
    fn fused_linear(x: FlexTensor, w: FlexTensor, products: Products) -> FlexTensor {
        plain_forward(&dense(&x), &SavedWeight::Dense(dense(&w)), products)
    }

    fn fused_lora_linear(x: FlexTensor, w: FlexTensor, a: FlexTensor, b: FlexTensor, scale: f32, products: Products) -> FlexTensor {
        lora_forward(x, SavedWeight::Dense(dense(&w)), a, b, scale, products).0
    }

    fn fused_packed_linear(x: FlexTensor, w: Arc<PackedMatrix>, products: Products) -> FlexTensor {
        plain_forward(&dense(&x), &SavedWeight::Packed(w), products)
    }

    fn fused_packed_lora_linear(
        x: FlexTensor,
        w: Arc<PackedMatrix>,
        a: FlexTensor,
        b: FlexTensor,
        scale: f32,
        products: Products,
    ) -> FlexTensor {
        lora_forward(x, SavedWeight::Packed(w), a, b, scale, products).0
    }
}

/// `x·W` on plain tensors (`x` dense).
fn plain_forward(x: &FlexTensor, w: &SavedWeight, products: Products) -> FlexTensor {
    let weight = w.values();
    let m = weight.mat();
    tensor(linear_forward(mat(x), m, None, products).0, &[x.shape().dims::<2>()[0], m.shape().1])
}

#[derive(Debug, Clone)]
struct Saved {
    x: FlexTensor,
    w: SavedWeight,
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
    let weight = s.w.values();
    linear_backward(mat(&s.x), weight.mat(), lora, mat(upstream), wanted, s.products)
}

/// The dense weight's tensor (for the shape of its gradient); `None` for a packed one, which has
/// no gradient.
fn dense_weight(s: &Saved) -> Option<&FlexTensor> {
    match &s.w {
        SavedWeight::Dense(w) => Some(w),
        SavedWeight::Packed(_) => None,
    }
}

/// Registers the gradients of the LoRA factors.
fn register_lora(grads: &mut Gradients, s: &Saved, g: &mut LinearGrads, a_node: Option<NodeId>, b_node: Option<NodeId>) {
    if let Some((a, b, _, _)) = &s.lora {
        register(grads, a_node, g.a.take(), a);
        register(grads, b_node, g.b.take(), b);
    }
}

#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 2> for LinearBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [x_node, w_node] = ops.parents;
        let upstream = dense(&grads.consume::<Flex>(&ops.node));
        let wanted = Wanted { x: x_node.is_some(), w: w_node.is_some(), a: false, b: false };
        let s = &ops.state;
        let g = backward_of(s, &upstream, wanted);
        register(grads, x_node.map(|n| n.id), g.x, &s.x);
        if let Some(w) = dense_weight(s) {
            register(grads, w_node.map(|n| n.id), g.w, w);
        }
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
        let mut g = backward_of(s, &upstream, wanted);
        register(grads, x_node.map(|n| n.id), g.x.take(), &s.x);
        if let Some(w) = dense_weight(s) {
            register(grads, w_node.map(|n| n.id), g.w.take(), w);
        }
        register_lora(grads, s, &mut g, a_node.map(|n| n.id), b_node.map(|n| n.id));
    }
}

/// A packed projection's backward: `∂x = g·W` only (its weight is frozen), so it keeps the
/// blocks and the input's row count, not the input.
#[derive(Debug)]
struct PackedLinearBackward;

#[derive(Debug, Clone)]
struct PackedSaved {
    w: Arc<PackedMatrix>,
    rows: usize,
    products: Products,
}

impl Backward<Flex, 1> for PackedLinearBackward {
    type State = PackedSaved;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [x_node] = ops.parents;
        let upstream = dense(&grads.consume::<Flex>(&ops.node));
        let Some(node) = x_node else { return };
        let s = &ops.state;
        let dx = input_gradient(mat(&upstream), WeightValues::of_packed(&s.w).mat(), s.products);
        grads.register::<Flex>(node.id, tensor(dx, &[s.rows, s.w.cols()]));
    }
}

/// A packed projection with a LoRA branch: `∂x`, `∂A`, `∂B`.
#[derive(Debug)]
struct PackedLoraLinearBackward;

impl Backward<Flex, 3> for PackedLoraLinearBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [x_node, a_node, b_node] = ops.parents;
        let upstream = dense(&grads.consume::<Flex>(&ops.node));
        let wanted = Wanted { x: x_node.is_some(), w: false, a: a_node.is_some(), b: b_node.is_some() };
        let s = &ops.state;
        let mut g = backward_of(s, &upstream, wanted);
        register(grads, x_node.map(|n| n.id), g.x.take(), &s.x);
        register_lora(grads, s, &mut g, a_node.map(|n| n.id), b_node.map(|n| n.id));
    }
}

/// `x·W + scale·(x·a)·b` on plain tensors, and the state its backward keeps.
fn lora_forward(x: FlexTensor, w: SavedWeight, a: FlexTensor, b: FlexTensor, scale: f32, products: Products) -> (FlexTensor, Saved) {
    let (x, a, b) = (dense(&x), dense(&a), dense(&b));
    let rows = x.shape().dims::<2>()[0];
    let (y, xa) = {
        let weight = w.values();
        let (y, xa) = linear_forward(mat(&x), weight.mat(), Some(LoraFactors { a: mat(&a), b: mat(&b), scale }), products);
        (tensor(y, &[rows, weight.mat().shape().1]), xa)
    };
    let xa = tensor(xa.unwrap_or_default(), &[rows, a.shape().dims::<2>()[1]]);
    (y, Saved { x, w, lora: Some((a, b, xa, scale)), products })
}

impl<C: CheckpointStrategy> FusedLinearBackend for Autodiff<Flex, C> {
    fn fused_linear(x: FloatTensor<Self>, w: FloatTensor<Self>, products: Products) -> FloatTensor<Self> {
        let (x, x_guard) = x.into_parts();
        let (w, w_guard) = w.into_parts();
        let (x, w) = (dense(&x), SavedWeight::Dense(dense(&w)));
        let y = plain_forward(&x, &w, products);
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
        let (y, saved) = lora_forward(x, SavedWeight::Dense(dense(&w)), a, b, scale, products);
        match LoraLinearBackward.prepare::<C>([x_guard, w_guard, a_guard, b_guard]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(saved, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fused_packed_linear(x: FloatTensor<Self>, w: Arc<PackedMatrix>, products: Products) -> FloatTensor<Self> {
        let (x, x_guard) = x.into_parts();
        let y = plain_forward(&dense(&x), &SavedWeight::Packed(w.clone()), products);
        match PackedLinearBackward.prepare::<C>([x_guard]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(PackedSaved { rows: x.shape().dims::<2>()[0], w, products }, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fused_packed_lora_linear(
        x: FloatTensor<Self>,
        w: Arc<PackedMatrix>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        scale: f32,
        products: Products,
    ) -> FloatTensor<Self> {
        let (x, x_guard) = x.into_parts();
        let (a, a_guard) = a.into_parts();
        let (b, b_guard) = b.into_parts();
        let (y, saved) = lora_forward(x, SavedWeight::Packed(w), a, b, scale, products);
        match PackedLoraLinearBackward.prepare::<C>([x_guard, a_guard, b_guard]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(saved, y),
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

/// `x·Wᵀ` for a packed, frozen `W` through the fused op (as [`linear`]).
pub(crate) fn packed_linear(x: Tensor<2>, w: Arc<PackedMatrix>, products: Products) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as FusedLinearBackend>::fused_packed_linear(x.into_dispatch(), w, products))
}

/// `x·Wᵀ + scale·(x·a)·b` for a packed, frozen `W` through the fused op (as [`linear`]).
pub(crate) fn packed_lora_linear(
    x: Tensor<2>,
    w: Arc<PackedMatrix>,
    a: Tensor<2>,
    b: Tensor<2>,
    scale: f32,
    products: Products,
) -> Tensor<2> {
    let out = <Dispatch as FusedLinearBackend>::fused_packed_lora_linear(
        x.into_dispatch(),
        w,
        a.into_dispatch(),
        b.into_dispatch(),
        scale,
        products,
    );
    Tensor::from_dispatch(out)
}
