//! ShifCon's symmetric InfoNCE on wgpu: forward from two launches of `contrastive_lse.wgsl`
//! (rows and columns), backward from `contrastive_grad.wgsl` and two matmuls, registered with
//! burn's autodiff as one operation.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::CubeTensor;
use burn::backend::{Backend, Cube, Dispatch, TensorMetadata, backend_extension};
use burn::prelude::*;
use cubecl::CubeDim;

use super::launch::{TILE, Template, empty_f32, f32_buffer, launch, prepared, u32_buffer};
use crate::contrastive::ContrastiveOptions;

// burn 0.22 runs every cubecl runtime as one `Cube` backend; the public API calls these only
// on wgpu devices, where the WGSL templates compile (fusion is not enabled in this workspace).
#[backend_extension(Autodiff, Cube)]
pub trait ContrastiveBackend: Backend {
    /// Symmetric InfoNCE of `anchors` and `positives` (`[n, d]`) → `[1]`.
    fn contrastive_infonce(anchors: FloatTensor<Self>, positives: FloatTensor<Self>, scale: f32, shift: bool) -> FloatTensor<Self>;
}

fn tile_values() -> Vec<(&'static str, String)> {
    vec![("tile", TILE.to_string()), ("tile_sq", (TILE * TILE).to_string())]
}

/// Row log-sum-exp and diagonal of `scale · x yᵀ` (`contrastive_lse.wgsl`).
fn row_logsumexp(x: &CubeTensor, y: &CubeTensor, scale: f32) -> (CubeTensor, CubeTensor) {
    let [n, d] = x.shape().dims::<2>();
    let lse = empty_f32(x, Shape::new([n]));
    let diag = empty_f32(x, Shape::new([n]));
    let template = Template { name: "contrastive_lse", source: include_str!("../../../../shaders/contrastive_lse.wgsl"), values: tile_values() };
    launch(
        x,
        template,
        CubeDim::new_2d(TILE, TILE),
        ((n as u32).div_ceil(TILE), 1, 1),
        vec![
            x.handle.clone(),
            y.handle.clone(),
            lse.handle.clone(),
            diag.handle.clone(),
            u32_buffer(x, &[n as u32, d as u32]),
            f32_buffer(x, &[scale]),
        ],
    );
    (lse, diag)
}

/// `dLoss/dL` for the logits `L = scale · a pᵀ` (`contrastive_grad.wgsl`), `[n, n]`.
fn logit_gradient(a: &CubeTensor, p: &CubeTensor, row_lse: &CubeTensor, col_lse: &CubeTensor, scale: f32) -> CubeTensor {
    let [n, d] = a.shape().dims::<2>();
    let g = empty_f32(a, Shape::new([n, n]));
    let template = Template { name: "contrastive_grad", source: include_str!("../../../../shaders/contrastive_grad.wgsl"), values: tile_values() };
    let groups = (n as u32).div_ceil(TILE);
    launch(
        a,
        template,
        CubeDim::new_2d(TILE, TILE),
        (groups, groups, 1),
        vec![
            a.handle.clone(),
            p.handle.clone(),
            row_lse.handle.clone(),
            col_lse.handle.clone(),
            g.handle.clone(),
            u32_buffer(a, &[n as u32, d as u32]),
            f32_buffer(a, &[scale]),
        ],
    );
    g
}

/// `positives − mean(positives) + mean(anchors)` (or the positives unchanged).
fn shifted(anchors: &CubeTensor, positives: CubeTensor, shift: bool) -> CubeTensor {
    if !shift {
        return positives;
    }
    let offset = Cube::float_sub(Cube::float_mean_dim(anchors.clone(), 0), Cube::float_mean_dim(positives.clone(), 0));
    prepared(Cube::float_add(positives, offset))
}

/// What the backward pass needs from the forward.
#[derive(Debug, Clone)]
struct Saved {
    anchors: CubeTensor,
    shifted_positives: CubeTensor,
    row_lse: CubeTensor,
    col_lse: CubeTensor,
    scale: f32,
    shift: bool,
}

fn forward(anchors: CubeTensor, positives: CubeTensor, scale: f32, shift: bool) -> (CubeTensor, Saved) {
    let anchors = prepared(anchors);
    let positives = shifted(&anchors, prepared(positives), shift);
    let n = anchors.shape().dims::<2>()[0];
    let (row_lse, diag) = row_logsumexp(&anchors, &positives, scale);
    let (col_lse, _) = row_logsumexp(&positives, &anchors, scale);
    // ½ · mean(row_lse − diag) + ½ · mean(col_lse − diag)
    let terms = Cube::float_sub(Cube::float_add(row_lse.clone(), col_lse.clone()), Cube::float_mul_scalar(diag, 2.0f32.into()));
    let loss = Cube::float_div_scalar(Cube::float_sum(terms), (2.0 * n as f32).into());
    (loss, Saved { anchors, shifted_positives: positives, row_lse, col_lse, scale, shift })
}

impl ContrastiveBackend for Cube {
    fn contrastive_infonce(anchors: FloatTensor<Self>, positives: FloatTensor<Self>, scale: f32, shift: bool) -> FloatTensor<Self> {
        forward(anchors, positives, scale, shift).0
    }
}

#[derive(Debug)]
struct InfoNceBackward;

impl Backward<Cube, 2> for InfoNceBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [anchor_node, positive_node] = ops.parents;
        let upstream = grads.consume::<Cube>(&ops.node);
        let s = ops.state;
        let n = s.anchors.shape().dims::<2>()[0];
        let g = logit_gradient(&s.anchors, &s.shifted_positives, &s.row_lse, &s.col_lse, s.scale);
        let g = Cube::float_mul(g, Cube::float_reshape(upstream, Shape::new([1, 1])));
        let g = Cube::float_mul_scalar(g, s.scale.into());
        // dA = s · G P′, dP′ = s · Gᵀ A
        let mut grad_anchors = Cube::float_matmul(g.clone(), s.shifted_positives.clone());
        let mut grad_positives = Cube::float_matmul(Cube::float_transpose(g), s.anchors.clone());
        if s.shift {
            // P′ = P − mean(P) + mean(A): the mean of dP′ moves from P to A.
            let mean = Cube::float_mean_dim(grad_positives.clone(), 0);
            grad_anchors = Cube::float_add(grad_anchors, mean.clone());
            grad_positives = Cube::float_sub(grad_positives, mean);
        }
        let _ = n;
        if let Some(node) = anchor_node {
            grads.register::<Cube>(node.id, grad_anchors);
        }
        if let Some(node) = positive_node {
            grads.register::<Cube>(node.id, grad_positives);
        }
    }
}

impl<C: CheckpointStrategy> ContrastiveBackend for Autodiff<Cube, C> {
    fn contrastive_infonce(anchors: FloatTensor<Self>, positives: FloatTensor<Self>, scale: f32, shift: bool) -> FloatTensor<Self> {
        let (anchors, anchor_guard) = anchors.into_parts();
        let (positives, positive_guard) = positives.into_parts();
        match InfoNceBackward.prepare::<C>([anchor_guard, positive_guard]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (loss, saved) = forward(anchors, positives, scale, shift);
                prep.finish(saved, loss)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(anchors, positives, scale, shift).0),
        }
    }
}

/// The loss on a wgpu device, differentiable when the tensors track gradients.
pub fn loss(anchors: Tensor<2>, positives: Tensor<2>, options: ContrastiveOptions) -> Tensor<1> {
    let out = <Dispatch as ContrastiveBackend>::contrastive_infonce(anchors.into_dispatch(), positives.into_dispatch(), options.scale, options.shift);
    Tensor::from_dispatch(out)
}
