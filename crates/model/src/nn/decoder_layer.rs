//! One pre-norm decoder layer: `h + attn(norm(h))`, then `h + mlp(norm(h))`
//! (HF `LlamaDecoderLayer`).

use burn::module::LoraAdapter;
use burn::nn::{Linear, RmsNorm};

use super::norm::{add_rms_norm, rms_norm};
use burn::prelude::*;

use super::attention::{LayerCache, SelfAttention};
use super::mlp::SwiGluMlp;
use std::sync::Arc;

use super::projection::{PackedLinear, Weights};
use crate::intervention::LinearKind;
use crate::pass::PassState;

#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub input_layernorm: RmsNorm,
    pub self_attn: SelfAttention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: SwiGluMlp,
}

/// The one table from a [`LinearKind`] to the block and field holding that projection; the
/// accessors of the layer and of its two blocks are generated from it.
macro_rules! projection_fields {
    ($($block:ident: $ty:ident { $($kind:ident => $field:ident),* })*) => {
        $(impl $ty {
            /// The stored weights of projection `kind` (dense, packed, a packed weight's LoRA
            /// adapter); all `None` for a kind this block does not hold.
            pub fn weights(&self, kind: LinearKind) -> (Option<&Linear>, Option<&Arc<PackedLinear>>, Option<&LoraAdapter>) {
                let dense = match kind { $(LinearKind::$kind => self.$field.as_ref(),)* #[allow(unreachable_patterns)] _ => None };
                (dense, self.packed.get(kind), self.packed_lora.get(kind))
            }
        })*

        impl DecoderLayer {
            /// The dense weights of projection `kind`, `None` when it is packed.
            pub fn projection(&self, kind: LinearKind) -> Option<&Linear> {
                match kind { $($(LinearKind::$kind => self.$block.$field.as_ref(),)*)* }
            }

            /// Where the dense weights of projection `kind` are stored (`None` when packed).
            pub fn projection_slot_mut(&mut self, kind: LinearKind) -> &mut Option<Linear> {
                match kind { $($(LinearKind::$kind => &mut self.$block.$field,)*)* }
            }

            /// The packed weights of projection `kind`, `None` when it is dense.
            pub fn packed(&self, kind: LinearKind) -> Option<&Arc<PackedLinear>> {
                match kind { $($(LinearKind::$kind => self.$block.packed.get(kind),)*)* }
            }

            /// The LoRA adapter on the packed weight of projection `kind`.
            pub fn packed_adapter(&self, kind: LinearKind) -> Option<&LoraAdapter> {
                match kind { $($(LinearKind::$kind => self.$block.packed_lora.get(kind),)*)* }
            }

            /// Attaches (or with `None` removes) the LoRA adapter on the packed weight of
            /// projection `kind`; an error when that weight is dense.
            pub fn set_packed_adapter(&mut self, kind: LinearKind, adapter: Option<LoraAdapter>) -> crate::error::Result<()> {
                if self.packed(kind).is_none() {
                    return Err(crate::error::ModelError::invalid(format!("{} is dense: its adapter belongs on its weight", kind.short_name())));
                }
                match kind { $($(LinearKind::$kind => self.$block.packed_lora.set(kind, adapter),)*)* }
                Ok(())
            }

            /// Stores projection `kind` as given: dense or packed, the other cleared (and with
            /// it a packed weight's adapter).
            pub fn set_projection(&mut self, kind: LinearKind, weights: StoredProjection) {
                let (dense, packed) = match weights {
                    StoredProjection::Dense(l) => (Some(l), None),
                    StoredProjection::Packed(p) => (None, Some(p)),
                };
                match kind { $($(LinearKind::$kind => {
                    self.$block.$field = dense;
                    self.$block.packed.set(kind, packed);
                    self.$block.packed_lora.set(kind, None);
                })*)* }
            }

            /// Bytes held by this layer's packed weights.
            pub fn packed_bytes(&self) -> usize {
                0 $(+ self.$block.packed.memory_bytes())*
            }
        }
    };
}

/// A projection's weights as stored (see [`super::projection`]).
pub enum StoredProjection {
    Dense(Linear),
    Packed(Arc<PackedLinear>),
}

projection_fields! {
    self_attn: SelfAttention { QProj => q_proj, KProj => k_proj, VProj => v_proj, OProj => o_proj }
    mlp: SwiGluMlp { GateProj => gate_proj, UpProj => up_proj, DownProj => down_proj }
}

impl DecoderLayer {
    /// The weights of projection `kind` as stored.
    pub fn weights(&self, kind: LinearKind) -> crate::error::Result<Weights<'_>> {
        Weights::of(self.projection(kind), self.packed(kind), self.packed_adapter(kind))
    }
}

impl DecoderLayer {
    /// # Shapes
    /// `h: [batch, seq, d_model] -> [batch, seq, d_model]`.
    pub(crate) fn forward(&self, layer: usize, h: Tensor<3>, state: &mut PassState<'_>, cache: Option<&mut LayerCache>) -> Tensor<3> {
        let normed = rms_norm(&self.input_layernorm, h.clone(), state.trace);
        let attended = self.self_attn.forward(layer, normed, state, cache);
        let (h, normed) = add_rms_norm(&self.post_attention_layernorm, h, attended, state.trace);
        let fed = self.mlp.forward(layer, normed, state);
        h + fed
    }
}
