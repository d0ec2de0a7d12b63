//! Activation checkpointing of a whole sub-graph (Chen et al. 2016, "Training Deep Nets with
//! Sublinear Memory Cost"): its forward runs outside the autodiff graph, so none of its
//! intermediate activations is kept for backward; one node stands for it, keeping only its
//! input, and its backward replays the forward on a graph of its own and backpropagates through
//! that. Memory for one sub-graph's activations at a time, for one more forward of each.
//!
//! The caller owns the computation ([`Replay`]); this module only grafts its result into the
//! graph. The parameters that train inside it reach the graph as one flattened vector (`params`,
//! the concatenation of their values in an order the replay knows), so burn's own concatenation
//! hands each its slice of the gradient. The replay's inner backward runs from inside the outer
//! one, which burn's autodiff allows: the outer step holds only its own graph's lock, and the
//! inner graph (fresh leaves, no parent in the outer one) never merges with it.
//!
//! On the CPU backend and on the cubecl backends (wgpu, CUDA; with the `wgpu` feature) under
//! autodiff, in f32; elsewhere an error. The input, the upstream gradient and the gradients cross
//! to the host once per replay: a layer's activations, and the gradients of what trains in it —
//! LoRA's factors are small, full fine-tuning's are the layer's weights.

use std::sync::Arc;

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata, backend_extension};
use burn::prelude::*;

use crate::error::{Result, shape_error};

/// A checkpointed computation, replayed in backward.
pub trait Replay: Send + Sync + std::fmt::Debug {
    /// Re-runs the computation from `input` on a graph of its own and backpropagates `upstream`
    /// (the gradient of its output): the gradient of the input, and when `want_params` that of
    /// the parameters, flattened in the order of the forward's `params`.
    fn gradients(&self, input: TensorData, upstream: TensorData, want_params: bool) -> Replayed;
}

/// What [`Replay::gradients`] returns.
#[derive(Debug)]
pub struct Replayed {
    pub input: TensorData,
    pub params: Option<TensorData>,
}

/// Whether [`checkpoint`] runs on `device`: burn's CPU backend, or (with the `wgpu` feature) a
/// cubecl backend, under autodiff.
pub fn supported(device: &Device) -> bool {
    let f32 = [burn::tensor::DType::F32];
    device.is_autodiff() && (crate::fused_cpu_supports(device, &f32) || on_cube(device))
}

#[cfg(feature = "wgpu")]
fn on_cube(device: &Device) -> bool {
    matches!(device.clone().without_autodiff().as_dispatch(), burn::backend::DispatchDevice::Cube(_))
}

#[cfg(not(feature = "wgpu"))]
fn on_cube(_device: &Device) -> bool {
    false
}

/// `output` — computed by the caller from `input` and the parameters `params` stands for, on the
/// inner (non-autodiff) device — as one node of `input`'s graph whose backward is `replay`'s.
///
/// # Shapes
/// `input` and `output` any (the replay knows them); `params: [n]`, the trainable parameters'
/// values concatenated (`None` when nothing inside trains).
pub fn checkpoint<const D: usize>(
    input: Tensor<D>,
    params: Option<Tensor<1>>,
    output: Tensor<D>,
    replay: Arc<dyn Replay>,
) -> Result<Tensor<D>> {
    let device = input.device();
    if !supported(&device) || input.dtype() != burn::tensor::DType::F32 {
        return Err(shape_error(
            "checkpoint",
            format!("checkpointing runs f32 under autodiff on the CPU backend or a GPU backend, not {:?} on {device:?}", input.dtype()),
        ));
    }
    if output.device().is_autodiff() {
        return Err(shape_error("checkpoint", "the output must come from the inner device, outside the graph".to_string()));
    }
    let output = Tensor::from_inner(output);
    let params = params.unwrap_or_else(|| Tensor::zeros([1], &device));
    let out = <Dispatch as CheckpointBackend>::checkpoint(
        input.into_dispatch(),
        params.into_dispatch(),
        output.into_dispatch(),
        ReplayArg(replay),
    );
    Ok(Tensor::from_dispatch(out))
}

/// The replay, as an op argument (burn's ops take owned, clonable arguments).
#[derive(Clone)]
pub(crate) struct ReplayArg(pub Arc<dyn Replay>);

impl std::fmt::Debug for ReplayArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[backend_extension(Autodiff, Flex: cfg(feature = "flex"), Cube: cfg(feature = "wgpu"))]
pub(crate) trait CheckpointBackend: Backend {
    /// `output` (computed from `input` and `params` outside the graph) as a node whose parents
    /// are `input` and `params`, and whose backward is `replay`'s.
    fn checkpoint(input: FloatTensor<Self>, params: FloatTensor<Self>, output: FloatTensor<Self>, replay: ReplayArg) -> FloatTensor<Self> {
        let _ = (input, params, replay);
        output
    }
}

#[cfg(feature = "flex")]
impl CheckpointBackend for burn::backend::Flex {}

#[cfg(feature = "wgpu")]
impl CheckpointBackend for burn::backend::Cube {}

#[derive(Debug, Clone)]
struct Saved<B: Backend> {
    input: FloatTensor<B>,
    /// The shape of `params` (its gradient's).
    params: Shape,
    replay: ReplayArg,
}

#[derive(Debug)]
struct CheckpointBackward;

impl<B: Backend> Backward<B, 2> for CheckpointBackward {
    type State = Saved<B>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [input_node, params_node] = ops.parents;
        let upstream = grads.consume::<B>(&ops.node);
        let state = &ops.state;
        let device = state.input.device();
        // Reads on a GPU complete here: backward runs natively, where blocking is allowed.
        let host = |t: FloatTensor<B>| pollster::block_on(B::float_into_data(t)).ok();
        let replayed = match (host(state.input.clone()), host(upstream)) {
            (Some(input), Some(upstream)) => state.replay.0.gradients(input, upstream, params_node.is_some()),
            // A device that failed to read back (backward cannot return an error): NaN gradients,
            // which stop the trainer with its non-finite-gradient error instead of a silent step.
            _ => Replayed {
                input: TensorData::new(vec![f32::NAN; state.input.shape().num_elements()], state.input.shape()),
                params: Some(TensorData::new(vec![f32::NAN; state.params.num_elements()], state.params.clone())),
            },
        };
        if let Some(node) = input_node {
            grads.register::<B>(node.id, B::float_from_data(replayed.input, &device));
        }
        if let (Some(node), Some(params)) = (params_node, replayed.params) {
            grads.register::<B>(node.id, B::float_from_data(params, &device));
        }
    }
}

impl<B: Backend + CheckpointBackend, C: CheckpointStrategy> CheckpointBackend for Autodiff<B, C> {
    fn checkpoint(input: FloatTensor<Self>, params: FloatTensor<Self>, output: FloatTensor<Self>, replay: ReplayArg) -> FloatTensor<Self> {
        let (input, input_guard) = input.into_parts();
        let (params, params_guard) = params.into_parts();
        let (output, _) = output.into_parts();
        match CheckpointBackward.prepare::<C>([input_guard, params_guard]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(Saved::<B> { input, params: params.shape(), replay }, output),
            OpsKind::UnTracked(prep) => prep.finish(output),
        }
    }
}
