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

/// Keys and values of earlier positions for one layer, in buffers reserved ahead: a decoding
/// step writes its positions after the cached ones in place and attends to a view of the filled
/// prefix, so no step copies the cache (a concatenation would copy all `t` positions per step,
/// and on wgpu launch a kernel per copied tensor). Past the reserve the buffers double.
///
/// # Shapes
/// Buffers `[batch, num_kv_heads, capacity, head_dim]` each, positions `0..len` filled.
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    buffers: Option<(Tensor<4>, Tensor<4>)>,
    len: usize,
    reserve: usize,
}

impl LayerCache {
    /// An empty cache whose first write reserves room for `positions` positions (or for what
    /// that write needs, if more).
    pub(crate) fn reserving(positions: usize) -> Self {
        LayerCache { buffers: None, len: 0, reserve: positions }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions the buffers hold room for before they grow.
    pub fn capacity(&self) -> usize {
        self.buffers.as_ref().map_or(0, |(key, _)| key.dims()[2])
    }

    /// Writes `key` and `value` (`[batch, kv_heads, seq, head_dim]`) after the cached positions
    /// and returns every cached position's keys and values (views of the buffers).
    pub(crate) fn append(&mut self, key: Tensor<4>, value: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let [b, kv, s, hd] = key.dims();
        let (start, end) = (self.len, self.len + s);
        let (key_buffer, value_buffer) = match self.buffers.take() {
            Some(buffers) if buffers.0.dims()[2] >= end => buffers,
            old => {
                let capacity = end.max(self.reserve).max(2 * old.as_ref().map_or(0, |(k, _)| k.dims()[2]));
                let grown = |fresh: &Tensor<4>, old: Option<Tensor<4>>| {
                    let buffer = Tensor::empty([b, kv, capacity, hd], (&fresh.device(), fresh.dtype()));
                    match old {
                        Some(old) if start > 0 => {
                            buffer.slice_assign([0..b, 0..kv, 0..start, 0..hd], old.slice([0..b, 0..kv, 0..start, 0..hd]))
                        }
                        _ => buffer,
                    }
                };
                let (old_key, old_value) = old.unzip();
                (grown(&key, old_key), grown(&value, old_value))
            }
        };
        // The buffers are held once here (the last step's views are gone), so both writes
        // happen in place on every backend.
        let key_buffer = key_buffer.slice_assign([0..b, 0..kv, start..end, 0..hd], key);
        let value_buffer = value_buffer.slice_assign([0..b, 0..kv, start..end, 0..hd], value);
        let filled = |buffer: &Tensor<4>| buffer.clone().slice([0..b, 0..kv, 0..end, 0..hd]);
        let views = (filled(&key_buffer), filled(&value_buffer));
        self.buffers = Some((key_buffer, value_buffer));
        self.len = end;
        views
    }
}

impl SelfAttention {
    /// # Shapes
    /// `x: [batch, seq, d_model] -> [batch, seq, d_model]`.
    pub(crate) fn forward(&self, layer: usize, x: Tensor<3>, state: &mut PassState<'_>, cache: Option<&mut LayerCache>) -> Tensor<3> {
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
            Some(cache) => cache.append(k, v),
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
