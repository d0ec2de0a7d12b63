//! Magnitude masking on wgpu: Wanda scores, exact-k and N:M masks, mask application and
//! per-feature statistics, each one shader of `shaders/`.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Cube, Dispatch, TensorMetadata, backend_extension};
use burn::prelude::*;
use cubecl::CubeDim;

use super::launch::{
    MAX_GROUPS_PER_DIM, Template, WORKGROUP, empty_f32, groups_for, launch, launch_elementwise, prepared, row_grid, u32_buffer,
    workgroup_values,
};
use crate::masking::Sparsity;

// burn 0.22 runs every cubecl runtime as one `Cube` backend; the public API calls these only
// on wgpu devices, where the WGSL templates compile (fusion is not enabled in this workspace).
#[backend_extension(Cube)]
pub trait MaskingBackend: Backend {
    fn wanda_score(weight: FloatTensor<Self>, norms: FloatTensor<Self>) -> FloatTensor<Self>;
    /// 1.0 keep / 0.0 prune, exactly `pruned` per row (`pruned > 0`).
    fn prune_rows(scores: FloatTensor<Self>, pruned: usize) -> FloatTensor<Self>;
    /// 1.0 keep / 0.0 prune, `pruned` per group of `m` consecutive entries.
    fn prune_groups(scores: FloatTensor<Self>, m: usize, pruned: usize) -> FloatTensor<Self>;
    fn apply_keep(weight: FloatTensor<Self>, keep: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `[chunks, 2, d]`: per chunk of `chunk_len` tokens (at most 65,535 chunks) and feature,
    /// Σx² (`[.., 0, ..]`) and max|x| (`[.., 1, ..]`) over the tokens whose mask is 1.
    fn feature_stats(x: FloatTensor<Self>, mask: FloatTensor<Self>, has_mask: bool, chunk_len: usize) -> FloatTensor<Self>;
}

/// Floats per shader element: 4 (a vec4, one 16-byte access) when `count` allows, else 1.
fn lanes(count: usize) -> usize {
    if count.is_multiple_of(4) { 4 } else { 1 }
}

fn element_type(lanes: usize) -> String {
    if lanes == 4 { "vec4<f32>".into() } else { "f32".into() }
}

/// Template values of a kernel over `count`-float rows: the workgroup size and the element type,
/// with the floats per element.
fn lane_values(count: usize) -> (usize, Vec<(&'static str, String)>) {
    let lanes = lanes(count);
    let mut values = workgroup_values();
    values.push(("elem", element_type(lanes)));
    (lanes, values)
}

impl MaskingBackend for Cube {
    fn wanda_score(weight: FloatTensor<Self>, norms: FloatTensor<Self>) -> FloatTensor<Self> {
        let weight = prepared(weight);
        let norms = prepared(norms);
        let [rows, width] = weight.shape().dims::<2>();
        let scores = empty_f32(&weight, Shape::new([rows, width]));
        let (lanes, mut values) = lane_values(width);
        values.push(("max_groups", MAX_GROUPS_PER_DIM.to_string()));
        let template = Template { name: "wanda_score", source: include_str!("../../../../shaders/wanda_score.wgsl"), values };
        let width = width / lanes;
        launch(
            &weight,
            template,
            CubeDim::new_1d(WORKGROUP),
            row_grid(rows, width, WORKGROUP),
            vec![weight.handle.clone(), norms.handle.clone(), scores.handle.clone(), u32_buffer(&weight, &[rows as u32, width as u32])],
        );
        scores
    }

    fn prune_rows(scores: FloatTensor<Self>, pruned: usize) -> FloatTensor<Self> {
        let scores = prepared(scores);
        let [rows, width] = scores.shape().dims::<2>();
        let keep = empty_f32(&scores, Shape::new([rows, width]));
        let mut values = workgroup_values();
        values.push(("max_groups_x", MAX_GROUPS_PER_DIM.to_string()));
        let template = Template { name: "prune_rows", source: include_str!("../../../../shaders/prune_rows.wgsl"), values };
        let (x, y) = groups_for(rows, 1);
        launch(
            &scores,
            template,
            CubeDim::new_1d(WORKGROUP),
            (x, y, 1),
            vec![scores.handle.clone(), keep.handle.clone(), u32_buffer(&scores, &[rows as u32, width as u32, pruned as u32])],
        );
        keep
    }

    fn prune_groups(scores: FloatTensor<Self>, m: usize, pruned: usize) -> FloatTensor<Self> {
        let scores = prepared(scores);
        let shape = scores.shape();
        let groups = shape.num_elements() / m;
        let keep = empty_f32(&scores, shape);
        let template = Template { name: "prune_nm", source: include_str!("../../../../shaders/prune_nm.wgsl"), values: workgroup_values() };
        launch_elementwise(
            &scores,
            template,
            groups,
            vec![scores.handle.clone(), keep.handle.clone(), u32_buffer(&scores, &[groups as u32, m as u32, pruned as u32])],
        );
        keep
    }

    fn apply_keep(weight: FloatTensor<Self>, keep: FloatTensor<Self>) -> FloatTensor<Self> {
        let weight = prepared(weight);
        let keep = prepared(keep);
        let (lanes, mut values) = lane_values(weight.shape().num_elements());
        let count = weight.shape().num_elements() / lanes;
        let in_place = weight.can_mut();
        let elem = element_type(lanes);
        let binding =
            |slot: usize, name: &str, ty: &str| format!("@group(0) @binding({slot}) var<storage, read_write> {name}: array<{ty}>;\n");
        let (bindings, store) = if in_place {
            (binding(0, "weight", &elem) + &binding(1, "keep", &elem) + &binding(2, "info", "u32"), "weight[i]")
        } else {
            (binding(0, "weight", &elem) + &binding(1, "keep", &elem) + &binding(2, "out", &elem) + &binding(3, "info", "u32"), "out[i]")
        };
        values.push(("bindings", bindings));
        values.push(("store", store.to_string()));
        let template = Template { name: "apply_mask", source: include_str!("../../../../shaders/apply_mask.wgsl"), values };
        let info = u32_buffer(&weight, &[count as u32]);
        if in_place {
            launch_elementwise(&weight, template, count, vec![weight.handle.clone(), keep.handle.clone(), info]);
            weight
        } else {
            let out = empty_f32(&weight, weight.shape());
            launch_elementwise(&weight, template, count, vec![weight.handle.clone(), keep.handle.clone(), out.handle.clone(), info]);
            out
        }
    }

    fn feature_stats(x: FloatTensor<Self>, mask: FloatTensor<Self>, has_mask: bool, chunk_len: usize) -> FloatTensor<Self> {
        let x = prepared(x);
        let mask = prepared(mask);
        let [tokens, d] = x.shape().dims::<2>();
        let chunks = tokens.div_ceil(chunk_len).max(1);
        let partials = empty_f32(&x, Shape::new([chunks, 2, d]));
        let (lanes, values) = lane_values(d);
        let template = Template { name: "feature_stats", source: include_str!("../../../../shaders/feature_stats.wgsl"), values };
        let width = d / lanes;
        launch(
            &x,
            template,
            CubeDim::new_1d(WORKGROUP),
            ((width as u32).div_ceil(WORKGROUP), chunks as u32, 1),
            vec![
                x.handle.clone(),
                mask.handle.clone(),
                partials.handle.clone(),
                u32_buffer(&x, &[tokens as u32, width as u32, has_mask as u32, chunk_len as u32]),
            ],
        );
        partials
    }
}

pub fn wanda_scores(weight: Tensor<2>, norms: Tensor<1>) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as MaskingBackend>::wanda_score(weight.into_dispatch(), norms.into_dispatch()))
}

pub fn prune_keep(scores: Tensor<2>, sparsity: Sparsity) -> Tensor<2> {
    let [_, width] = scores.dims();
    let keep = match sparsity {
        Sparsity::Unstructured(_) => {
            let pruned = sparsity.pruned_per_row(width);
            if pruned == 0 {
                return scores.ones_like();
            }
            <Dispatch as MaskingBackend>::prune_rows(scores.into_dispatch(), pruned)
        }
        Sparsity::NM { n, m } => <Dispatch as MaskingBackend>::prune_groups(scores.into_dispatch(), m, m - n),
    };
    Tensor::from_dispatch(keep)
}

pub fn apply_keep(weight: Tensor<2>, keep: Tensor<2>) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as MaskingBackend>::apply_keep(weight.into_dispatch(), keep.into_dispatch()))
}

/// `[chunks, 2, d]` partial statistics of `x: [tokens, d]` (see `MaskingBackend::feature_stats`).
fn chunk_stats(x: Tensor<2>, token_mask: Option<Tensor<1>>, chunk_len: usize) -> Tensor<3> {
    let has_mask = token_mask.is_some();
    let mask = token_mask.unwrap_or_else(|| Tensor::ones([1], &x.device()));
    Tensor::from_dispatch(<Dispatch as MaskingBackend>::feature_stats(x.into_dispatch(), mask.into_dispatch(), has_mask, chunk_len))
}

pub fn feature_stats(x: Tensor<2>, token_mask: Option<Tensor<1>>) -> (Tensor<1>, Tensor<1>) {
    let [tokens, d] = x.dims();
    // Chunks of at least 64 tokens, at most 65,535 of them (one grid dimension), folded here.
    let partials = chunk_stats(x, token_mask, tokens.div_ceil(MAX_GROUPS_PER_DIM as usize).max(64));
    let [chunks, _, _] = partials.dims();
    let sum_sq = partials.clone().slice([0..chunks, 0..1]);
    let max_abs = partials.slice([0..chunks, 1..2]);
    if chunks == 1 {
        return (sum_sq.reshape([d]), max_abs.reshape([d]));
    }
    (sum_sq.sum_dim(0).reshape([d]), max_abs.max_dim(0).reshape([d]))
}

/// One chunk per sequence: the partials are the per-sequence statistics.
pub fn sequence_feature_stats(x: Tensor<3>, valid: Option<Tensor<2>>) -> (Tensor<2>, Tensor<2>) {
    let [batch, seq, d] = x.dims();
    let partials = chunk_stats(x.reshape([batch * seq, d]), valid.map(|v| v.reshape([batch * seq])), seq.max(1));
    (partials.clone().slice([0..batch, 0..1]).reshape([batch, d]), partials.slice([0..batch, 1..2]).reshape([batch, d]))
}
