//! [`crate::cpu::swiglu`] as a burn op on the CPU backend, with its own backward.

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
use crate::cpu::swiglu::{swiglu_backward, swiglu_forward};

#[backend_extension(Autodiff, Flex)]
pub trait FusedSwiGluBackend: Backend {
    /// `silu(gate) · up`, elementwise.
    fn fused_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self>;
}

fn forward(gate: &FlexTensor, up: &FlexTensor) -> FlexTensor {
    tensor(swiglu_forward(values(gate), values(up)), gate.shape().as_slice())
}

impl FusedSwiGluBackend for Flex {
    fn fused_swiglu(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
        forward(&dense(&gate), &dense(&up))
    }
}

#[derive(Debug)]
struct SwiGluBackward;

impl Backward<Flex, 2> for SwiGluBackward {
    /// The dense gate and up inputs.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [gate_node, up_node] = ops.parents;
        let upstream = dense(&grads.consume::<Flex>(&ops.node));
        let (gate, up) = ops.state;
        let (grad_gate, grad_up) = swiglu_backward(values(&gate), values(&up), values(&upstream));
        let shape = gate.shape();
        if let Some(node) = gate_node {
            grads.register::<Flex>(node.id, tensor(grad_gate, shape.as_slice()));
        }
        if let Some(node) = up_node {
            grads.register::<Flex>(node.id, tensor(grad_up, shape.as_slice()));
        }
    }
}

impl<C: CheckpointStrategy> FusedSwiGluBackend for Autodiff<Flex, C> {
    fn fused_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        let (gate, gate_guard) = gate.into_parts();
        let (up, up_guard) = up.into_parts();
        let (gate, up) = (dense(&gate), dense(&up));
        match SwiGluBackward.prepare::<C>([gate_guard, up_guard]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = forward(&gate, &up);
                prep.finish((gate, up), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(&gate, &up)),
        }
    }
}

/// SwiGLU through the fused op (CPU backend only; the public function checked everything).
pub(crate) fn swiglu(gate: Tensor<3>, up: Tensor<3>) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as FusedSwiGluBackend>::fused_swiglu(gate.into_dispatch(), up.into_dispatch()))
}
