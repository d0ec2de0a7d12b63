//! SwiGLU's gate, `silu(g) · u` (Shazeer 2020), and its gradients in one pass each, on host
//! slices: burn composes it from a sigmoid (libm's `expf` per value), two products and their
//! backward steps, each a pass over `[tokens, d_ff]` under autodiff.

use super::exp;
use super::rows::for_each_chunk;
use super::simd::vectorized;

/// Values per parallel piece.
const CHUNK: usize = 1 << 14;

#[inline(always)]
fn sigmoid(g: f32) -> f32 {
    1.0 / (1.0 + exp::exp(-g))
}

/// `silu(gate) · up`, elementwise. The caller checks that the lengths agree.
pub fn swiglu_forward(gate: &[f32], up: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; gate.len()];
    for_each_chunk(&mut out, CHUNK, |start, out| {
        let (g, u) = (&gate[start..start + out.len()], &up[start..start + out.len()]);
        forward_chunk(out, g, u);
    });
    out
}

vectorized! {
    fn forward_chunk(out: &mut [f32], gate: &[f32], up: &[f32]) {
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            *o = g * sigmoid(g) * u;
        }
    }
}

vectorized! {
    fn grad_up_chunk(grad_up: &mut [f32], gate: &[f32], grad_out: &[f32]) {
        for ((d, &g), &go) in grad_up.iter_mut().zip(gate).zip(grad_out) {
            *d = go * g * sigmoid(g);
        }
    }
}

vectorized! {
    fn grad_gate_chunk(grad_gate: &mut [f32], gate: &[f32], up: &[f32], grad_out: &[f32]) {
        for (((d, &g), &u), &go) in grad_gate.iter_mut().zip(gate).zip(up).zip(grad_out) {
            let s = sigmoid(g);
            *d = go * u * s * (1.0 + g * (1.0 - s));
        }
    }
}

/// `(∂/∂gate, ∂/∂up)` of [`swiglu_forward`] given `∂loss/∂out`:
/// `silu'(g) = σ(g) · (1 + g · (1 − σ(g)))`.
pub fn swiglu_backward(gate: &[f32], up: &[f32], grad_out: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut grad_gate = vec![0.0f32; gate.len()];
    let grad_up_values = {
        let mut grad_up = vec![0.0f32; gate.len()];
        for_each_chunk(&mut grad_up, CHUNK, |start, du| {
            let (g, go) = (&gate[start..start + du.len()], &grad_out[start..start + du.len()]);
            grad_up_chunk(du, g, go);
        });
        grad_up
    };
    for_each_chunk(&mut grad_gate, CHUNK, |start, dg| {
        let n = dg.len();
        let (g, u, go) = (&gate[start..start + n], &up[start..start + n], &grad_out[start..start + n]);
        grad_gate_chunk(dg, g, u, go);
    });
    (grad_gate, grad_up_values)
}
