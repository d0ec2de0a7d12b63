//! Activation checkpointing by decoder layer (Chen et al. 2016): a layer's forward runs outside
//! the autodiff graph and one node of `rosetta_kernels::checkpoint` stands for it, keeping only
//! its input; backward replays the layer on fresh leaves and backpropagates through the replay.
//! A training step then holds one layer's activations at a time instead of every layer's, for
//! one more forward of each layer, on the CPU and the GPU backends. Switched on by
//! [`crate::CausalLm::with_layer_checkpointing`] (the trainer's `[optim] activation_checkpointing`).
//!
//! What trains inside a layer — every float parameter that wants a gradient, LoRA factors
//! included — reaches the graph as one concatenated vector, so burn's concatenation hands each
//! parameter its slice of the gradient the replay computes.

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;
use rosetta_kernels::checkpoint::{Replay, Replayed, checkpoint};
use rosetta_kernels::linear::Products;

use super::decoder_layer::DecoderLayer;
use crate::intervention::{Interventions, Trace};
use crate::pass::PassState;

/// Whether a pass may checkpoint its layers: training in f32 on the CPU backend (bf16 products
/// included; a cast compute copy is not) or a GPU backend, no KV cache, and no hook inside the
/// layers (feature statistics read activations the replay would not keep).
pub(crate) fn applies(state: &PassState<'_>, device: &Device, caching: bool, dtype: burn::tensor::DType) -> bool {
    state.checkpoint_layers
        && !caching
        && dtype == burn::tensor::DType::F32
        && state.interventions.feature_stats.is_empty()
        && rosetta_kernels::checkpoint::supported(device)
}

/// The tensors of a pass a layer reads besides its input, outside the graph.
#[derive(Debug, Clone)]
struct PassTensors {
    valid: Option<Tensor<2>>,
    valid_tokens: usize,
    cos: Tensor<4>,
    sin: Tensor<4>,
    attention_mask: Option<Tensor<4, Bool>>,
    dense_products: Products,
}

impl PassTensors {
    fn of(state: &PassState<'_>) -> Self {
        PassTensors {
            valid: state.valid.clone().map(Tensor::inner),
            valid_tokens: state.valid_tokens,
            cos: state.cos.clone().inner(),
            sin: state.sin.clone().inner(),
            attention_mask: state.attention_mask.clone().map(Tensor::inner),
            dense_products: state.dense_products,
        }
    }

    /// A pass over these tensors, lifted to autodiff (as constants) when `autodiff`.
    fn state<'a>(&self, interventions: &'a Interventions, trace: &'a mut Trace, autodiff: bool) -> PassState<'a> {
        let lift4 = |t: Tensor<4>| if autodiff { Tensor::from_inner(t) } else { t };
        PassState {
            interventions,
            trace,
            valid: self.valid.clone().map(|t| if autodiff { Tensor::from_inner(t) } else { t }),
            valid_tokens: self.valid_tokens,
            cos: lift4(self.cos.clone()),
            sin: lift4(self.sin.clone()),
            attention_mask: self.attention_mask.clone().map(|t| if autodiff { Tensor::from_inner(t) } else { t }),
            dense_products: self.dense_products,
            checkpoint_layers: false,
            differentiable: true,
        }
    }
}

/// The parameters of a module that want a gradient, in visiting order, flattened.
#[derive(Default)]
struct Trainable {
    ids: Vec<ParamId>,
    values: Vec<Tensor<1>>,
}

impl ModuleVisitor for Trainable {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        if value.is_require_grad() {
            let n = value.shape().num_elements();
            self.ids.push(param.id);
            self.values.push(value.reshape([n]));
        }
    }
}

/// The module's parameters as plain tensors of the inner backend (outside any graph).
struct ToInner;

impl ModuleMapper for ToInner {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(Tensor::inner)
    }
}

/// The module's parameters as fresh autodiff leaves: those in `trainable` want gradients.
struct FreshLeaves<'a> {
    trainable: &'a [ParamId],
}

impl ModuleMapper for FreshLeaves<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let wanted = self.trainable.contains(&param.id);
        param.map(|t| {
            let t = Tensor::from_inner(t);
            if wanted { t.require_grad() } else { t }
        })
    }
}

/// The gradients of a module's parameters by id, flattened; `None` for one that did not read
/// back as f32.
struct GradientsOf<'a> {
    grads: &'a burn::tensor::Gradients,
    wanted: &'a [ParamId],
    found: BTreeMap<ParamId, Option<Vec<f32>>>,
}

impl ModuleVisitor for GradientsOf<'_> {
    #[cfg_attr(
        target_family = "wasm",
        allow(clippy::disallowed_methods, reason = "checkpointing runs natively: the browser's training never switches it on")
    )]
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.wanted.contains(&param.id)
            && let Some(grad) = param.val().grad(self.grads)
        {
            self.found.insert(param.id, grad.into_data().try_into_vec::<f32>().ok());
        }
    }
}

/// Layer `index` as it ran, for its replay.
#[derive(Debug)]
struct LayerReplay {
    /// The layer's parameters on the inner backend, and that backend's device.
    layer: DecoderLayer,
    device: Device,
    index: usize,
    pass: PassTensors,
    /// The trainable parameters, in the order of the forward's concatenation, with their sizes.
    trainable: Vec<(ParamId, usize)>,
}

impl Replay for LayerReplay {
    #[cfg_attr(
        target_family = "wasm",
        allow(clippy::disallowed_methods, reason = "checkpointing runs natively: the browser's training never switches it on")
    )]
    fn gradients(&self, input: TensorData, upstream: TensorData, want_params: bool) -> Replayed {
        let device = self.device.clone().autodiff();
        let ids: Vec<ParamId> = self.trainable.iter().map(|(id, _)| *id).collect();
        let wanted: &[ParamId] = if want_params { &ids } else { &[] };
        let layer = self.layer.clone().map(&mut FreshLeaves { trainable: wanted });
        let h = Tensor::<3>::from_data(input, &device).require_grad();
        let (interventions, mut trace) = (Interventions::none(), Trace::default());
        let mut state = self.pass.state(&interventions, &mut trace, true);
        let out = layer.forward(self.index, h.clone(), &mut state, None);
        let shape = h.shape();
        // A replay that failed (its layer recorded an error and carried on with zeros) gives NaN
        // gradients, which stop the trainer with its non-finite-gradient error — never a silent
        // zero step.
        let failed = || {
            let n = self.trainable.iter().map(|(_, n)| n).sum::<usize>();
            Replayed {
                input: TensorData::new(vec![f32::NAN; shape.num_elements()], shape.clone()),
                params: want_params.then(|| TensorData::new(vec![f32::NAN; n], [n])),
            }
        };
        if trace.failure.is_some() {
            return failed();
        }
        let upstream = Tensor::<3>::from_data(upstream, &device);
        let grads = (out * upstream).sum().backward();
        let d_input = h.grad(&grads).unwrap_or_else(|| h.clone().inner().zeros_like()).into_data();
        let params = want_params.then(|| {
            let mut found = GradientsOf { grads: &grads, wanted, found: BTreeMap::new() };
            layer.visit(&mut found);
            // A parameter no path reached has a zero gradient.
            let n = self.trainable.iter().map(|(_, n)| n).sum::<usize>();
            let mut flat = Vec::with_capacity(n);
            for (id, len) in &self.trainable {
                match found.found.remove(id) {
                    Some(Some(grad)) => flat.extend_from_slice(&grad),
                    Some(None) => flat.resize(flat.len() + len, f32::NAN),
                    None => flat.resize(flat.len() + len, 0.0),
                }
            }
            TensorData::new(flat, [n])
        });
        Replayed { input: d_input, params }
    }
}

/// Layer `index` on `h` with its activations checkpointed (see the module docs).
pub(crate) fn forward(layer: &DecoderLayer, index: usize, h: Tensor<3>, state: &mut PassState<'_>) -> Tensor<3> {
    let mut trainable = Trainable::default();
    layer.visit(&mut trainable);
    let sizes = trainable.values.iter().map(|t| t.dims()[0]);
    let ids: Vec<(ParamId, usize)> = trainable.ids.iter().copied().zip(sizes).collect();
    let params = (!trainable.values.is_empty()).then(|| Tensor::cat(trainable.values, 0));
    let inner = layer.clone().map(&mut ToInner);
    let pass = PassTensors::of(state);
    let output = {
        let mut inner_state = pass.state(state.interventions, state.trace, false);
        inner.forward(index, h.clone().inner(), &mut inner_state, None)
    };
    let replay = LayerReplay { layer: inner, device: h.device().without_autodiff(), index, pass, trainable: ids };
    let [b, s, d] = output.dims();
    match checkpoint(h, params, output, Arc::new(replay)) {
        Ok(out) => {
            state.trace.checkpointed_layers += 1;
            out
        }
        Err(e) => {
            state.trace.record_failure(crate::error::ModelError::invalid(e.to_string()));
            Tensor::zeros([b, s, d], &state.cos.device())
        }
    }
}
