//! Magnitude masking on wgpu: Wanda scores, exact-k and N:M masks, mask application and
//! per-feature statistics, each one shader of `shaders/`.

use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::CubeTensor;
use burn::backend::{Backend, Cube, Dispatch, TensorMetadata, backend_extension};
use burn::prelude::*;
use cubecl::CubeDim;

use super::launch::{MAX_GROUPS_PER_DIM, WORKGROUP, Template, empty_f32, groups_for, launch, prepared, u32_buffer};
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
    fn feature_sum_sq(x: FloatTensor<Self>, mask: FloatTensor<Self>, has_mask: bool) -> FloatTensor<Self>;
    fn feature_max_abs(x: FloatTensor<Self>, mask: FloatTensor<Self>, has_mask: bool) -> FloatTensor<Self>;
}

fn workgroup_values() -> Vec<(&'static str, String)> {
    vec![("workgroup", WORKGROUP.to_string())]
}

fn elementwise_grid(items: usize) -> (u32, u32, u32) {
    let (x, y) = groups_for(items, WORKGROUP);
    (x, y, 1)
}

fn launch_feature_stats(x: CubeTensor, mask: CubeTensor, has_mask: bool) -> (CubeTensor, CubeTensor) {
    let x = prepared(x);
    let mask = prepared(mask);
    let [tokens, d] = x.shape().dims::<2>();
    let sum_sq = empty_f32(&x, Shape::new([d]));
    let max_abs = empty_f32(&x, Shape::new([d]));
    let template = Template { name: "feature_stats", source: include_str!("../../../../shaders/feature_stats.wgsl"), values: workgroup_values() };
    launch(
        &x,
        template,
        CubeDim::new_1d(WORKGROUP),
        ((d as u32).div_ceil(WORKGROUP), 1, 1),
        vec![x.handle.clone(), mask.handle.clone(), sum_sq.handle.clone(), max_abs.handle.clone(), u32_buffer(&x, &[tokens as u32, d as u32, has_mask as u32])],
    );
    (sum_sq, max_abs)
}

impl MaskingBackend for Cube {
    fn wanda_score(weight: FloatTensor<Self>, norms: FloatTensor<Self>) -> FloatTensor<Self> {
        let weight = prepared(weight);
        let norms = prepared(norms);
        let [rows, width] = weight.shape().dims::<2>();
        let scores = empty_f32(&weight, Shape::new([rows, width]));
        let template = Template { name: "wanda_score", source: include_str!("../../../../shaders/wanda_score.wgsl"), values: workgroup_values() };
        launch(
            &weight,
            template,
            CubeDim::new_1d(WORKGROUP),
            elementwise_grid(rows * width),
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
        launch(
            &scores,
            template,
            CubeDim::new_1d(WORKGROUP),
            elementwise_grid(groups),
            vec![scores.handle.clone(), keep.handle.clone(), u32_buffer(&scores, &[groups as u32, m as u32, pruned as u32])],
        );
        keep
    }

    fn apply_keep(weight: FloatTensor<Self>, keep: FloatTensor<Self>) -> FloatTensor<Self> {
        let weight = prepared(weight);
        let keep = prepared(keep);
        let count = weight.shape().num_elements();
        let in_place = weight.can_mut();
        let (bindings, store) = if in_place {
            (
                "@group(0) @binding(0) var<storage, read_write> weight: array<f32>;\n\
                 @group(0) @binding(1) var<storage, read_write> keep: array<f32>;\n\
                 @group(0) @binding(2) var<storage, read_write> info: array<u32>;",
                "weight[i]",
            )
        } else {
            (
                "@group(0) @binding(0) var<storage, read_write> weight: array<f32>;\n\
                 @group(0) @binding(1) var<storage, read_write> keep: array<f32>;\n\
                 @group(0) @binding(2) var<storage, read_write> out: array<f32>;\n\
                 @group(0) @binding(3) var<storage, read_write> info: array<u32>;",
                "out[i]",
            )
        };
        let mut values = workgroup_values();
        values.push(("bindings", bindings.to_string()));
        values.push(("store", store.to_string()));
        let template = Template { name: "apply_mask", source: include_str!("../../../../shaders/apply_mask.wgsl"), values };
        let info = u32_buffer(&weight, &[count as u32]);
        if in_place {
            launch(&weight, template, CubeDim::new_1d(WORKGROUP), elementwise_grid(count), vec![weight.handle.clone(), keep.handle.clone(), info]);
            weight
        } else {
            let out = empty_f32(&weight, weight.shape());
            launch(&weight, template, CubeDim::new_1d(WORKGROUP), elementwise_grid(count), vec![weight.handle.clone(), keep.handle.clone(), out.handle.clone(), info]);
            out
        }
    }

    fn feature_sum_sq(x: FloatTensor<Self>, mask: FloatTensor<Self>, has_mask: bool) -> FloatTensor<Self> {
        launch_feature_stats(x, mask, has_mask).0
    }

    fn feature_max_abs(x: FloatTensor<Self>, mask: FloatTensor<Self>, has_mask: bool) -> FloatTensor<Self> {
        launch_feature_stats(x, mask, has_mask).1
    }
}

pub fn wanda_scores(weight: Tensor<2>, norms: Tensor<1>) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as MaskingBackend>::wanda_score(weight.into_dispatch(), norms.into_dispatch()))
}

pub fn prune_mask(scores: Tensor<2>, sparsity: Sparsity) -> Tensor<2, Bool> {
    let [_, width] = scores.dims();
    let keep = match sparsity {
        Sparsity::Unstructured(_) => {
            let pruned = sparsity.pruned_per_row(width);
            if pruned == 0 {
                return scores.greater_equal_elem(f32::NEG_INFINITY);
            }
            <Dispatch as MaskingBackend>::prune_rows(scores.into_dispatch(), pruned)
        }
        Sparsity::NM { n, m } => <Dispatch as MaskingBackend>::prune_groups(scores.into_dispatch(), m, m - n),
    };
    Tensor::<2>::from_dispatch(keep).greater_elem(0.5)
}

pub fn apply_mask(weight: Tensor<2>, keep: Tensor<2, Bool>) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as MaskingBackend>::apply_keep(weight.into_dispatch(), keep.float().into_dispatch()))
}

pub fn feature_stats(x: Tensor<2>, token_mask: Option<Tensor<1>>) -> (Tensor<1>, Tensor<1>) {
    let has_mask = token_mask.is_some();
    let mask = token_mask.unwrap_or_else(|| Tensor::ones([1], &x.device()));
    let sum_sq = <Dispatch as MaskingBackend>::feature_sum_sq(x.clone().into_dispatch(), mask.clone().into_dispatch(), has_mask);
    let max_abs = <Dispatch as MaskingBackend>::feature_max_abs(x.into_dispatch(), mask.into_dispatch(), has_mask);
    (Tensor::from_dispatch(sum_sq), Tensor::from_dispatch(max_abs))
}
