//! [`crate::cpu::rms_norm`] as a burn op on the CPU backend, with its own backward.

use std::sync::Arc;

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
use crate::cpu::rms_norm::{rms_norm_backward, rms_norm_forward};

#[backend_extension(Autodiff, Flex)]
pub trait FusedRmsNormBackend: Backend {
    /// `x · γ / √(mean(x²) + ε)` over the last dimension.
    fn fused_rms_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, epsilon: f32) -> FloatTensor<Self>;
}

impl FusedRmsNormBackend for Flex {
    fn fused_rms_norm(x: FlexTensor, gamma: FlexTensor, epsilon: f32) -> FlexTensor {
        let (x, gamma) = (dense(&x), dense(&gamma));
        tensor(rms_norm_forward(values(&x), values(&gamma), epsilon).0, x.shape().as_slice())
    }
}

#[derive(Debug, Clone)]
struct Saved {
    x: FlexTensor,
    gamma: FlexTensor,
    /// Each row's `1 / rms`.
    inv_rms: Arc<[f32]>,
}

#[derive(Debug)]
struct RmsNormBackward;

impl Backward<Flex, 2> for RmsNormBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [x_node, gamma_node] = ops.parents;
        let upstream = dense(&grads.consume::<Flex>(&ops.node));
        let s = ops.state;
        let (grad_x, grad_gamma) = rms_norm_backward(values(&s.x), values(&s.gamma), &s.inv_rms, values(&upstream), gamma_node.is_some());
        if let Some(node) = x_node {
            grads.register::<Flex>(node.id, tensor(grad_x, s.x.shape().as_slice()));
        }
        if let (Some(node), Some(g)) = (gamma_node, grad_gamma) {
            grads.register::<Flex>(node.id, tensor(g, s.gamma.shape().as_slice()));
        }
    }
}

impl<C: CheckpointStrategy> FusedRmsNormBackend for Autodiff<Flex, C> {
    fn fused_rms_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, epsilon: f32) -> FloatTensor<Self> {
        let (x, x_guard) = x.into_parts();
        let (gamma, gamma_guard) = gamma.into_parts();
        let (x, gamma) = (dense(&x), dense(&gamma));
        let (y, inv_rms) = rms_norm_forward(values(&x), values(&gamma), epsilon);
        let y = tensor(y, x.shape().as_slice());
        match RmsNormBackward.prepare::<C>([x_guard, gamma_guard]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(Saved { x, gamma, inv_rms: inv_rms.into() }, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

/// RMSNorm through the fused op (CPU backend only; the public function checked everything).
pub(crate) fn rms_norm<const D: usize>(x: Tensor<D>, gamma: Tensor<1>, epsilon: f32) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedRmsNormBackend>::fused_rms_norm(x.into_dispatch(), gamma.into_dispatch(), epsilon))
}
