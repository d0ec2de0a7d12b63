//! ShifCon's symmetric InfoNCE on wgpu: forward from one blocked pass over the logits
//! (`contrastive_partials.wgsl`: row and column log-sum-exp partials per block) and a fold of
//! the partials (`contrastive_merge.wgsl`), backward from `contrastive_grad.wgsl` and two
//! matmuls, registered with burn's autodiff as one operation. The logits `[n, n]` are never
//! stored in the forward pass; both matmul kernels share `logit_block.wgsl`.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::CubeTensor;
use burn::backend::{Backend, Cube, Dispatch, TensorMetadata, backend_extension};
use burn::prelude::*;
use cubecl::CubeDim;

use super::launch::{BLOCK, TILE, Template, WORKGROUP, empty_f32, f32_buffer, launch, prepared, u32_buffer};
use crate::contrastive::ContrastiveOptions;

// burn 0.22 runs every cubecl runtime as one `Cube` backend; the public API calls these only
// on wgpu devices, where the WGSL templates compile (fusion is not enabled in this workspace).
#[backend_extension(Autodiff, Cube)]
pub trait ContrastiveBackend: Backend {
    /// Symmetric InfoNCE of `anchors` and `positives` (`[n, d]`) → `[1]`.
    fn contrastive_infonce(anchors: FloatTensor<Self>, positives: FloatTensor<Self>, scale: f32, shift: bool) -> FloatTensor<Self>;
}

fn block_values() -> Vec<(&'static str, String)> {
    vec![
        ("tile", TILE.to_string()),
        // vec4 per padded row of the k-major tiles: TILE × (TILE + 1).
        ("tile_stride", (TILE * (TILE + 1)).to_string()),
    ]
}

/// Blocks per side of the `[n, n]` logits.
fn blocks(n: usize) -> u32 {
    (n as u32).div_ceil(BLOCK)
}

/// `[2, n]` log-sum-exps of the rows (0) and columns (1) of `scale · a pᵀ`, and its diagonal
/// `[n]`: one blocked pass for partials, one fold.
fn logsumexp_both_ways(a: &CubeTensor, p: &CubeTensor, scale: f32) -> (CubeTensor, CubeTensor) {
    let [n, d] = a.shape().dims::<2>();
    let blocks = blocks(n);
    let partials = empty_f32(a, Shape::new([4, n, blocks as usize]));
    let diag = empty_f32(a, Shape::new([n]));
    let source =
        concat!(include_str!("../../../../shaders/logit_block.wgsl"), include_str!("../../../../shaders/contrastive_partials.wgsl"));
    launch(
        a,
        Template { name: "contrastive_partials", source, values: block_values() },
        CubeDim::new_2d(TILE, TILE),
        (blocks, blocks, 1),
        vec![
            a.handle.clone(),
            p.handle.clone(),
            partials.handle.clone(),
            diag.handle.clone(),
            u32_buffer(a, &[n as u32, d as u32, blocks]),
            f32_buffer(a, &[scale]),
        ],
    );
    let lse = empty_f32(a, Shape::new([2, n]));
    launch(
        a,
        Template {
            name: "contrastive_merge",
            source: include_str!("../../../../shaders/contrastive_merge.wgsl"),
            values: vec![("workgroup", WORKGROUP.to_string())],
        },
        CubeDim::new_1d(WORKGROUP),
        ((2 * n as u32).div_ceil(WORKGROUP), 1, 1),
        vec![partials.handle.clone(), lse.handle.clone(), u32_buffer(a, &[n as u32, blocks])],
    );
    (lse, diag)
}

/// `dLoss/dL` for the logits `L = scale · a pᵀ` (`contrastive_grad.wgsl`), `[n, n]`.
fn logit_gradient(a: &CubeTensor, p: &CubeTensor, lse: &CubeTensor, scale: f32) -> CubeTensor {
    let [n, d] = a.shape().dims::<2>();
    let g = empty_f32(a, Shape::new([n, n]));
    let source = concat!(include_str!("../../../../shaders/logit_block.wgsl"), include_str!("../../../../shaders/contrastive_grad.wgsl"));
    let blocks = blocks(n);
    launch(
        a,
        Template { name: "contrastive_grad", source, values: block_values() },
        CubeDim::new_2d(TILE, TILE),
        (blocks, blocks, 1),
        vec![
            a.handle.clone(),
            p.handle.clone(),
            lse.handle.clone(),
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
    /// `[2, n]`: row and column log-sum-exps of the logits.
    lse: CubeTensor,
    scale: f32,
    shift: bool,
}

fn forward(anchors: CubeTensor, positives: CubeTensor, scale: f32, shift: bool) -> (CubeTensor, Saved) {
    let anchors = prepared(anchors);
    let positives = shifted(&anchors, prepared(positives), shift);
    let n = anchors.shape().dims::<2>()[0];
    let (lse, diag) = logsumexp_both_ways(&anchors, &positives, scale);
    // ½ · mean(row_lse − diag) + ½ · mean(col_lse − diag)
    let terms = Cube::float_sub(Cube::float_sum(lse.clone()), Cube::float_mul_scalar(Cube::float_sum(diag), 2.0f32.into()));
    let loss = Cube::float_div_scalar(terms, (2.0 * n as f32).into());
    (loss, Saved { anchors, shifted_positives: positives, lse, scale, shift })
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
        let g = logit_gradient(&s.anchors, &s.shifted_positives, &s.lse, s.scale);
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
    let out = <Dispatch as ContrastiveBackend>::contrastive_infonce(
        anchors.into_dispatch(),
        positives.into_dispatch(),
        options.scale,
        options.shift,
    );
    Tensor::from_dispatch(out)
}
