//! The SwiGLU feed-forward block: `down(silu(gate(x)) * up(x))` (HF `LlamaMLP`).

use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::silu;

use crate::intervention::{LinearId, LinearKind};
use crate::pass::PassState;

#[derive(Module, Debug)]
pub struct SwiGluMlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl SwiGluMlp {
    /// # Shapes
    /// `x: [batch, seq, d_model] -> [batch, seq, d_model]`.
    pub(crate) fn forward(&self, layer: usize, x: Tensor<3>, state: &mut PassState<'_>) -> Tensor<3> {
        state.record_linear_input(&[LinearId::new(layer, LinearKind::GateProj), LinearId::new(layer, LinearKind::UpProj)], &x);
        let hidden = silu(self.gate_proj.forward(x.clone())) * self.up_proj.forward(x);
        state.record_linear_input(&[LinearId::new(layer, LinearKind::DownProj)], &hidden);
        self.down_proj.forward(hidden)
    }
}
