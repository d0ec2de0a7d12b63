//! One pre-norm decoder layer: `h + attn(norm(h))`, then `h + mlp(norm(h))`
//! (HF `LlamaDecoderLayer`).

use burn::nn::{Linear, RmsNorm};
use burn::prelude::*;

use super::attention::{LayerCache, SelfAttention};
use super::mlp::SwiGluMlp;
use crate::intervention::LinearKind;
use crate::pass::PassState;

#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub input_layernorm: RmsNorm,
    pub self_attn: SelfAttention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: SwiGluMlp,
}

/// The one table from a [`LinearKind`] to the field holding that projection; the accessors
/// below are generated from it.
macro_rules! projection_fields {
    ($($kind:ident => $($field:ident).+;)*) => {
        impl DecoderLayer {
            /// The projection of kind `kind`.
            pub fn projection(&self, kind: LinearKind) -> &Linear {
                match kind { $(LinearKind::$kind => &self.$($field).+,)* }
            }

            pub fn projection_mut(&mut self, kind: LinearKind) -> &mut Linear {
                match kind { $(LinearKind::$kind => &mut self.$($field).+,)* }
            }
        }
    };
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
