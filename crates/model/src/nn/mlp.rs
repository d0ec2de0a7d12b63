//! The SwiGLU feed-forward block: `down(silu(gate(x)) * up(x))` (HF `LlamaMLP`).

use burn::nn::Linear;
use burn::prelude::*;

use super::projection::{PackedAdapters, PackedSlots, run_projections};
use crate::intervention::{LinearId, LinearKind};
use crate::pass::PassState;

#[derive(Module, Debug)]
pub struct SwiGluMlp {
    /// Dense projections; `None` where the weight is packed (see [`super::projection`]).
    pub gate_proj: Option<Linear>,
    pub up_proj: Option<Linear>,
    pub down_proj: Option<Linear>,
    #[module(skip)]
    pub packed: PackedSlots,
    /// LoRA adapters on packed projections (see [`super::projection`]).
    pub packed_lora: PackedAdapters,
}

impl SwiGluMlp {
    /// # Shapes
    /// `x: [batch, seq, d_model] -> [batch, seq, d_model]`.
    pub(crate) fn forward(&self, layer: usize, x: Tensor<3>, state: &mut PassState<'_>) -> Tensor<3> {
        state.record_linear_input(&[LinearId::new(layer, LinearKind::GateProj), LinearId::new(layer, LinearKind::UpProj)], &x);
        let mut gate_up = run_projections(&[LinearKind::GateProj, LinearKind::UpProj], |k| self.weights(k), x, state).into_iter();
        let (Some(gate), Some(up)) = (gate_up.next(), gate_up.next()) else { unreachable!("run_projections returns one tensor per kind") };
        let (dims, device) = (gate.dims(), gate.device());
        let hidden = match rosetta_kernels::swiglu::swiglu(gate, up) {
            Ok(hidden) => hidden,
            Err(e) => {
                state.trace.record_failure(crate::error::ModelError::invalid(e.to_string()));
                Tensor::zeros(dims, &device)
            }
        };
        state.record_linear_input(&[LinearId::new(layer, LinearKind::DownProj)], &hidden);
        let mut out = run_projections(&[LinearKind::DownProj], |k| self.weights(k), hidden, state);
        out.pop().unwrap_or_else(|| unreachable!("run_projections returns one tensor per kind"))
    }
}
