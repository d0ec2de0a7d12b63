//! [`crate::cpu::attention`] as a burn op on the CPU backend, with its own backward: forward
//! saves the output and the log-sum-exps, backward recomputes the probabilities.

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
use crate::cpu::attention::{AttentionForward, AttentionMask, AttentionShape, attention_backward, attention_forward};

/// The host data of one call: the mask (`[batch, seq, kv_len]`, true = blocked; `None` = causal)
/// and the score scale.
#[derive(Debug, Clone)]
pub(crate) struct MaskAndScale {
    pub blocked: Option<Arc<[bool]>>,
    pub scale: f32,
}

impl MaskAndScale {
    fn mask(&self) -> AttentionMask<'_> {
        match &self.blocked {
            Some(b) => AttentionMask::Blocked(b),
            None => AttentionMask::Causal,
        }
    }
}

#[backend_extension(Autodiff, Flex)]
pub trait FusedAttentionBackend: Backend {
    /// `softmax(scale · q kᵀ + mask) · v` with grouped key/value heads → `q`'s shape.
    fn fused_attention(query: FloatTensor<Self>, key: FloatTensor<Self>, value: FloatTensor<Self>, mask: MaskAndScale)
    -> FloatTensor<Self>;
}

fn shape_of(q: &FlexTensor, k: &FlexTensor) -> AttentionShape {
    let [batch, heads, seq, head_dim] = q.shape().dims::<4>();
    let [_, kv_heads, kv_len, _] = k.shape().dims::<4>();
    AttentionShape { batch, heads, kv_heads, seq, kv_len, head_dim }
}

fn forward(q: &FlexTensor, k: &FlexTensor, v: &FlexTensor, mask: &MaskAndScale) -> AttentionForward {
    attention_forward(&shape_of(q, k), values(q), values(k), values(v), mask.mask(), mask.scale)
}

impl FusedAttentionBackend for Flex {
    fn fused_attention(query: FlexTensor, key: FlexTensor, value: FlexTensor, mask: MaskAndScale) -> FlexTensor {
        let (q, k, v) = (dense(&query), dense(&key), dense(&value));
        tensor(forward(&q, &k, &v, &mask).output, &q.shape().dims::<4>())
    }
}

#[derive(Debug, Clone)]
struct Saved {
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    forward: Arc<AttentionForward>,
    mask: MaskAndScale,
}

#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 3> for AttentionBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [q_node, k_node, v_node] = ops.parents;
        let upstream = dense(&grads.consume::<Flex>(&ops.node));
        let s = ops.state;
        let shape = shape_of(&s.q, &s.k);
        let g = attention_backward(
            &shape,
            values(&s.q),
            values(&s.k),
            values(&s.v),
            &s.forward,
            values(&upstream),
            s.mask.mask(),
            s.mask.scale,
        );
        for (node, grad, like) in [(q_node, g.query, &s.q), (k_node, g.key, &s.k), (v_node, g.value, &s.v)] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, tensor(grad, &like.shape().dims::<4>()));
            }
        }
    }
}

impl<C: CheckpointStrategy> FusedAttentionBackend for Autodiff<Flex, C> {
    fn fused_attention(
        query: FloatTensor<Self>,
        key: FloatTensor<Self>,
        value: FloatTensor<Self>,
        mask: MaskAndScale,
    ) -> FloatTensor<Self> {
        let (q, q_guard) = query.into_parts();
        let (k, k_guard) = key.into_parts();
        let (v, v_guard) = value.into_parts();
        let (q, k, v) = (dense(&q), dense(&k), dense(&v));
        let dims = q.shape().dims::<4>();
        match AttentionBackward.prepare::<C>([q_guard, k_guard, v_guard]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = forward(&q, &k, &v, &mask);
                let output = tensor(out.output.clone(), &dims);
                prep.finish(Saved { q, k, v, forward: Arc::new(out), mask }, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(tensor(forward(&q, &k, &v, &mask).output, &dims)),
        }
    }
}

/// Attention through the fused op (CPU backend only; the public function checked everything).
pub(crate) fn attention(query: Tensor<4>, key: Tensor<4>, value: Tensor<4>, mask: MaskAndScale) -> Tensor<4> {
    let out = <Dispatch as FusedAttentionBackend>::fused_attention(query.into_dispatch(), key.into_dispatch(), value.into_dispatch(), mask);
    Tensor::from_dispatch(out)
}
