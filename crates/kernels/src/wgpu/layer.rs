//! The decoder layer's row and element-wise ops on wgpu, one dispatch each where burn launches
//! several: RMSNorm (`shaders/rms_norm.wgsl`, also with the residual add before it), rotary embeddings (`shaders/rotary.wgsl`, reading
//! the heads' strided view in place), SwiGLU (`shaders/swiglu.wgsl`) and causal attention with
//! grouped key/value heads (`shaders/attention.wgsl`).
//!
//! Why: a decode step on a GPU is bound by launches, not arithmetic — about fifty dispatches a
//! layer, each with its bind group and bookkeeping, for a few microseconds of work
//! (`reports/gpu/README.md`). Forward only, on devices without autodiff: inference, and the
//! forward of a checkpointed layer in training, whose replay (under autodiff) runs the references
//! — the two agree to rounding (`tests/kernels/parity.rs`: 10⁻⁵ of the output's scale), as the
//! CPU's RMSNorm already does.

use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::CubeTensor;
use burn::backend::{Backend, Cube, Dispatch, TensorMetadata, backend_extension};
use burn::prelude::*;
use burn::tensor::Shape;
use cubecl::CubeDim;

use super::launch::{Template, empty_f32, groups_for, launch, launch_elementwise, prepared, u32_buffer, workgroup_values};

/// Threads of the RMSNorm and attention workgroups, one workgroup a row (a power of two for the
/// tree sums).
const ROW_WORKGROUP: u32 = 128;

/// Values of the attention kernel's `info`: six sizes and three strides for each of q, k and v.
const ATTENTION_INFO: usize = 15;

/// `t` as the kernels read it: strided, but dense along the last dimension. A storage-tiled
/// tensor (laid out for one matmul, its strides ordering tiles) is laid back in rows first.
fn dense_rows(t: CubeTensor) -> CubeTensor {
    if !t.meta.is_tiled() && t.meta.strides()[t.meta.strides().len() - 1] == 1 { t } else { prepared(t) }
}

/// The strides of a rank-4 tensor's first three dimensions, for a shader's `info`.
fn outer_strides(t: &CubeTensor) -> [u32; 3] {
    let strides = t.meta.strides();
    [strides[0] as u32, strides[1] as u32, strides[2] as u32]
}

// burn 0.22 runs every cubecl runtime as one `Cube` backend; the public API calls these only on
// wgpu devices, where the WGSL templates compile.
#[backend_extension(Cube)]
pub trait LayerBackend: Backend {
    /// RMSNorm over the last dimension of a contiguous `x` by `gamma` (its width).
    fn rms_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, epsilon: f32) -> FloatTensor<Self>;
    /// `x + delta` (same shapes, contiguous) and its RMSNorm by `gamma`, in one dispatch.
    fn add_rms_norm(
        x: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        epsilon: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// RoPE of `x: [batch, heads, seq, head_dim]` by `[batch, 1, seq, head_dim]` tables.
    fn rotary(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `silu(gate) · up`, element by element.
    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Causal attention of `q: [batch, heads, seq, dim]` over `k`, `v: [batch, kv_heads, keys,
    /// dim]`, the queries being the last `seq` keys.
    fn attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl LayerBackend for Cube {
    fn rms_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, epsilon: f32) -> FloatTensor<Self> {
        launch_rms_norm(x, None, gamma, epsilon).1
    }

    fn add_rms_norm(
        x: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        epsilon: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (sum, normed) = launch_rms_norm(x, Some(delta), gamma, epsilon);
        (sum.unwrap_or_else(|| unreachable!("a delta makes a sum")), normed)
    }

    fn rotary(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>) -> FloatTensor<Self> {
        // The heads stay where the projection wrote them when only the last dimension must be
        // dense; anything else is made contiguous first.
        let x = dense_rows(x);
        let (cos, sin) = (prepared(cos), prepared(sin));
        let [batch, heads, seq, dim] = x.shape().dims::<4>();
        let count = batch * heads * seq * dim;
        let out = empty_f32(&x, Shape::new([batch, heads, seq, dim]));
        let template = Template { name: "rotary", source: include_str!("../../../../shaders/rotary.wgsl"), values: workgroup_values() };
        let mut info = vec![count as u32, heads as u32, seq as u32, dim as u32];
        info.extend(outer_strides(&x));
        let info = u32_buffer(&x, &info);
        launch_elementwise(&x, template, count, vec![x.handle.clone(), cos.handle.clone(), sin.handle.clone(), out.handle.clone(), info]);
        out
    }

    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        let (gate, up) = (prepared(gate), prepared(up));
        let shape = gate.shape();
        let count = shape.num_elements();
        let out = empty_f32(&gate, shape);
        let template = Template { name: "swiglu", source: include_str!("../../../../shaders/swiglu.wgsl"), values: workgroup_values() };
        let info = u32_buffer(&gate, &[count as u32]);
        launch_elementwise(&gate, template, count, vec![gate.handle.clone(), up.handle.clone(), out.handle.clone(), info]);
        out
    }

    fn attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>) -> FloatTensor<Self> {
        let (q, k, v) = (dense_rows(q), dense_rows(k), dense_rows(v));
        let [batch, heads, seq, dim] = q.shape().dims::<4>();
        let [_, kv_heads, keys, _] = k.shape().dims::<4>();
        let rows = batch * heads * seq;
        let scores = empty_f32(&q, Shape::new([rows * keys]));
        let out = empty_f32(&q, Shape::new([batch, heads, seq, dim]));
        let values = vec![("workgroup", ROW_WORKGROUP.to_string()), ("info_len", ATTENTION_INFO.to_string())];
        let template = Template {
            name: "attention",
            source: concat!(include_str!("../../../../shaders/row_workgroup.wgsl"), include_str!("../../../../shaders/attention.wgsl")),
            values,
        };
        let mut info = [rows, heads, seq, keys, dim, heads / kv_heads].map(|v| v as u32).to_vec();
        for t in [&q, &k, &v] {
            info.extend(outer_strides(t));
        }
        debug_assert_eq!(info.len(), ATTENTION_INFO);
        let info = u32_buffer(&q, &info);
        let (gx, gy) = groups_for(rows, 1);
        launch(
            &q,
            template,
            CubeDim::new_1d(ROW_WORKGROUP),
            (gx, gy, 1),
            vec![q.handle.clone(), k.handle.clone(), v.handle.clone(), scores.handle.clone(), out.handle.clone(), info],
        );
        out
    }
}

/// `shaders/rms_norm.wgsl` over the rows of `x` (plus `delta`, when given, whose sum it also
/// returns).
fn launch_rms_norm(x: CubeTensor, delta: Option<CubeTensor>, gamma: CubeTensor, epsilon: f32) -> (Option<CubeTensor>, CubeTensor) {
    let (x, gamma) = (prepared(x), prepared(gamma));
    let shape = x.shape();
    let d = shape[shape.num_dims() - 1];
    let rows = shape.num_elements() / d.max(1);
    let out = empty_f32(&x, shape.clone());
    let values = vec![
        ("d", d.to_string()),
        ("workgroup", ROW_WORKGROUP.to_string()),
        ("epsilon_bits", epsilon.to_bits().to_string()),
        ("info_len", "1".to_string()),
    ];
    let info = u32_buffer(&x, &[rows as u32]);
    let (template, buffers, sum) = match delta {
        None => {
            let source = concat!(
                include_str!("../../../../shaders/row_workgroup.wgsl"),
                include_str!("../../../../shaders/rms_norm_bindings.wgsl"),
                include_str!("../../../../shaders/rms_norm.wgsl")
            );
            let buffers = vec![x.handle.clone(), gamma.handle.clone(), out.handle.clone(), info];
            (Template { name: "rms_norm", source, values }, buffers, None)
        }
        Some(delta) => {
            let delta = prepared(delta);
            let sum = empty_f32(&x, shape);
            let source = concat!(
                include_str!("../../../../shaders/row_workgroup.wgsl"),
                include_str!("../../../../shaders/add_rms_norm_bindings.wgsl"),
                include_str!("../../../../shaders/rms_norm.wgsl")
            );
            let buffers = vec![x.handle.clone(), delta.handle.clone(), gamma.handle.clone(), sum.handle.clone(), out.handle.clone(), info];
            (Template { name: "add_rms_norm", source, values }, buffers, Some(sum))
        }
    };
    let (gx, gy) = groups_for(rows, 1);
    launch(&x, template, CubeDim::new_1d(ROW_WORKGROUP), (gx, gy, 1), buffers);
    (sum, out)
}

/// See [`LayerBackend::rms_norm`]; the caller checked the shapes, the device and the dtypes.
pub(crate) fn rms_norm<const D: usize>(x: Tensor<D>, gamma: Tensor<1>, epsilon: f32) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as LayerBackend>::rms_norm(x.into_dispatch(), gamma.into_dispatch(), epsilon))
}

/// See [`LayerBackend::add_rms_norm`]; the caller checked the shapes, the device and the dtypes.
pub(crate) fn add_rms_norm<const D: usize>(x: Tensor<D>, delta: Tensor<D>, gamma: Tensor<1>, epsilon: f32) -> (Tensor<D>, Tensor<D>) {
    let (sum, normed) = <Dispatch as LayerBackend>::add_rms_norm(x.into_dispatch(), delta.into_dispatch(), gamma.into_dispatch(), epsilon);
    (Tensor::from_dispatch(sum), Tensor::from_dispatch(normed))
}

/// See [`LayerBackend::rotary`]; the caller checked the shapes, the device and the dtypes.
pub(crate) fn rotary(x: Tensor<4>, cos: Tensor<4>, sin: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as LayerBackend>::rotary(x.into_dispatch(), cos.into_dispatch(), sin.into_dispatch()))
}

/// See [`LayerBackend::swiglu`]; the caller checked the shapes, the device and the dtypes.
pub(crate) fn swiglu(gate: Tensor<3>, up: Tensor<3>) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as LayerBackend>::swiglu(gate.into_dispatch(), up.into_dispatch()))
}

/// See [`LayerBackend::attention`]; the caller checked the shapes, the device and the dtypes.
pub(crate) fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as LayerBackend>::attention(q.into_dispatch(), k.into_dispatch(), v.into_dispatch()))
}
