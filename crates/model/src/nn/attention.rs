//! Grouped-query self-attention with rotary positions and a KV cache (HF `LlamaAttention`,
//! `MistralAttention`, `Qwen2Attention`).

use burn::nn::Linear;
use burn::prelude::*;

use super::projection::{PackedAdapters, PackedSlots, run_projections};
use super::rotary::apply_rotary;
use crate::intervention::{LinearId, LinearKind};
use crate::pass::PassState;

#[derive(Module, Debug)]
pub struct SelfAttention {
    /// Dense projections; `None` where the weight is packed (see [`super::projection`]).
    pub q_proj: Option<Linear>,
    pub k_proj: Option<Linear>,
    pub v_proj: Option<Linear>,
    pub o_proj: Option<Linear>,
    #[module(skip)]
    pub packed: PackedSlots,
    /// LoRA adapters on packed projections (see [`super::projection`]).
    pub packed_lora: PackedAdapters,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

/// Keys and values of earlier positions for one layer.
///
/// # Shapes
/// `[batch, num_kv_heads, cached_len, head_dim]` each.
#[derive(Debug, Clone)]
pub struct LayerCache {
    pub key: Tensor<4>,
    pub value: Tensor<4>,
}

impl SelfAttention {
    /// # Shapes
    /// `x: [batch, seq, d_model] -> [batch, seq, d_model]`.
    pub(crate) fn forward(
        &self,
        layer: usize,
        x: Tensor<3>,
        state: &mut PassState<'_>,
        cache: Option<&mut Option<LayerCache>>,
    ) -> Tensor<3> {
        let [batch, seq, _] = x.dims();
        let x_device = x.device();
        let (h, kv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        state.record_linear_input(
            &[LinearId::new(layer, LinearKind::QProj), LinearId::new(layer, LinearKind::KProj), LinearId::new(layer, LinearKind::VProj)],
            &x,
        );
        let heads = |t: Tensor<3>, n: usize| t.reshape([batch, seq, n, hd]).swap_dims(1, 2);
        let mut qkv =
            run_projections(&[LinearKind::QProj, LinearKind::KProj, LinearKind::VProj], |k| self.weights(k), x, state).into_iter();
        let (Some(q), Some(k), Some(v)) = (qkv.next(), qkv.next(), qkv.next()) else {
            unreachable!("run_projections returns one tensor per kind")
        };
        let mut rotate = |t: Tensor<4>| match apply_rotary(t.clone(), &state.cos, &state.sin) {
            Ok(rotated) => rotated,
            Err(e) => {
                state.trace.record_failure(e);
                t
            }
        };
        let q = rotate(heads(q, h));
        let k = rotate(heads(k, kv));
        let v = heads(v, kv);

        let (k, v) = match cache {
            Some(slot) => {
                let (k, v) = match slot.take() {
                    Some(prev) => (Tensor::cat(vec![prev.key, k], 2), Tensor::cat(vec![prev.value, v], 2)),
                    None => (k, v),
                };
                *slot = Some(LayerCache { key: k.clone(), value: v.clone() });
                (k, v)
            }
            None => (k, v),
        };
        let context = match rosetta_kernels::attention::attention(q, k, v, state.attention_mask.clone()) {
            Ok(context) => context,
            Err(e) => {
                state.trace.record_failure(crate::error::ModelError::invalid(e.to_string()));
                Tensor::zeros([batch, h, seq, hd], &x_device)
            }
        };
        let context = context.swap_dims(1, 2).reshape([batch, seq, h * hd]);
        state.record_linear_input(&[LinearId::new(layer, LinearKind::OProj)], &context);
        let mut out = run_projections(&[LinearKind::OProj], |k| self.weights(k), context, state);
        out.pop().unwrap_or_else(|| unreachable!("run_projections returns one tensor per kind"))
    }
}
