//! One pre-norm decoder layer: `h + attn(norm(h))`, then `h + mlp(norm(h))`
//! (HF `LlamaDecoderLayer`).

use burn::nn::{Linear, RmsNorm};
use burn::prelude::*;

use super::attention::{LayerCache, SelfAttention};
use super::mlp::SwiGluMlp;
use super::projection::PackedLinear;
use crate::intervention::LinearKind;
use crate::pass::PassState;
use std::sync::Arc;

#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub input_layernorm: RmsNorm,
    pub self_attn: SelfAttention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: SwiGluMlp,
}

/// The one table from a [`LinearKind`] to the field holding that projection (and the block
/// whose packed slots hold it when packed); the accessors below are generated from it.
macro_rules! projection_fields {
    ($($kind:ident => $block:ident . $field:ident;)*) => {
        impl DecoderLayer {
            /// The dense weights of projection `kind`, `None` when it is packed.
            pub fn projection(&self, kind: LinearKind) -> Option<&Linear> {
                match kind { $(LinearKind::$kind => self.$block.$field.as_ref(),)* }
            }

            /// The packed weights of projection `kind`, `None` when it is dense.
            pub fn packed(&self, kind: LinearKind) -> Option<&Arc<PackedLinear>> {
                match kind { $(LinearKind::$kind => self.$block.packed.get(kind),)* }
            }

            /// Stores projection `kind` as given: dense or packed, the other cleared.
            pub fn set_projection(&mut self, kind: LinearKind, weights: StoredProjection) {
                let (dense, packed) = match weights {
                    StoredProjection::Dense(l) => (Some(l), None),
                    StoredProjection::Packed(p) => (None, Some(p)),
                };
                match kind { $(LinearKind::$kind => { self.$block.$field = dense; self.$block.packed.set(kind, packed); })* }
            }

            /// Bytes held by this layer's packed weights.
            pub fn packed_bytes(&self) -> usize {
                self.self_attn.packed.memory_bytes() + self.mlp.packed.memory_bytes()
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
    QProj => self_attn.q_proj;
    KProj => self_attn.k_proj;
    VProj => self_attn.v_proj;
    OProj => self_attn.o_proj;
    GateProj => mlp.gate_proj;
    UpProj => mlp.up_proj;
    DownProj => mlp.down_proj;
}

impl DecoderLayer {
    /// # Shapes
    /// `h: [batch, seq, d_model] -> [batch, seq, d_model]`.
    pub(crate) fn forward(
        &self,
        layer: usize,
        h: Tensor<3>,
        state: &mut PassState<'_>,
        cache: Option<&mut Option<LayerCache>>,
    ) -> Tensor<3> {
        let attended = self.self_attn.forward(layer, self.input_layernorm.forward(h.clone()), state, cache);
        let h = h + attended;
        let fed = self.mlp.forward(layer, self.post_attention_layernorm.forward(h.clone()), state);
        h + fed
    }
}
