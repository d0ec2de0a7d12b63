//! One pre-norm decoder layer: `h + attn(norm(h))`, then `h + mlp(norm(h))`
//! (HF `LlamaDecoderLayer`).

use burn::nn::RmsNorm;
use burn::prelude::*;

use super::attention::{LayerCache, SelfAttention};
use super::mlp::SwiGluMlp;
use crate::pass::PassState;

#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub input_layernorm: RmsNorm,
    pub self_attn: SelfAttention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: SwiGluMlp,
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
