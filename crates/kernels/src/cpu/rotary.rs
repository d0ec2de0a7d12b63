//! Rotary position embedding (Su et al. 2021; HF `apply_rotary_pos_emb`), `x·cos + rotate(x)·sin`
//! with `rotate([a, b]) = [−b, a]` over the two halves of each head, and its gradient, in one
//! pass each on host slices. The input may be a strided view (the decoder's heads are a
//! `swap_dims` of the projection's output); the output is dense `[batch, heads, seq, head_dim]`.
//! burn composes the rotation from two slices, a negation, a concatenation, two products and a
//! sum, each a pass (and a step of backward) over the queries and keys of every layer.

use super::rows::for_each_chunk;

/// A 4-D view `[batch, heads, seq, head_dim]`: element `(b, h, s, i)` at
/// `b·strides[0] + h·strides[1] + s·strides[2] + i·strides[3]`.
#[derive(Clone, Copy, Debug)]
pub struct Heads<'a> {
    pub data: &'a [f32],
    pub dims: [usize; 4],
    pub strides: [usize; 4],
}

impl Heads<'_> {
    /// Whether every element lies inside `data`.
    pub fn fits(&self) -> bool {
        if self.dims.contains(&0) {
            return true;
        }
        let last = self.dims.iter().zip(&self.strides).try_fold(0usize, |acc, (&n, &s)| acc.checked_add((n - 1).checked_mul(s)?));
        last.is_some_and(|l| l < self.data.len())
    }
}

/// Rotates each `head_dim` row of `x` in place of a dense output. `cos`, `sin`:
/// `[batch, seq, head_dim]`; `inverse` applies the transpose of the rotation (backward: the
/// angle's sign flips, so `sin` enters negated).
fn rotate(x: Heads<'_>, cos: &[f32], sin: &[f32], inverse: bool) -> Vec<f32> {
    let [b, h, s, d] = x.dims;
    let half = d / 2;
    let mut out = vec![0.0f32; b * h * s * d];
    // One piece per (batch, head): its `seq × head_dim` block is contiguous in the output.
    for_each_chunk(&mut out, (s * d).max(1), |start, block| {
        let (bi, hi) = (start / (h * s * d), (start / (s * d)) % h);
        for (si, row) in block.chunks_exact_mut(d).enumerate() {
            let at = bi * x.strides[0] + hi * x.strides[1] + si * x.strides[2];
            let table = (bi * s + si) * d;
            let (c, sn) = (&cos[table..table + d], &sin[table..table + d]);
            let value = |i: usize| x.data[at + i * x.strides[3]];
            for i in 0..half {
                let (a, bb) = (value(i), value(i + half));
                if inverse {
                    // y = Rᵀ-rotation: ∂x₁ = g₁·cos₁ + g₂·sin₂, ∂x₂ = g₂·cos₂ − g₁·sin₁.
                    row[i] = a * c[i] + bb * sn[i + half];
                    row[i + half] = bb * c[i + half] - a * sn[i];
                } else {
                    row[i] = a * c[i] - bb * sn[i];
                    row[i + half] = bb * c[i + half] + a * sn[i + half];
                }
            }
        }
    });
    out
}

/// `x·cos + rotate(x)·sin`, dense `[batch, heads, seq, head_dim]`. The caller checks that `x`
/// fits its data, `head_dim` is even and the tables are `[batch, seq, head_dim]`.
pub fn rotary_forward(x: Heads<'_>, cos: &[f32], sin: &[f32]) -> Vec<f32> {
    rotate(x, cos, sin, false)
}

/// `∂loss/∂x` of [`rotary_forward`] given the dense `∂loss/∂y`.
pub fn rotary_backward(grad_y: Heads<'_>, cos: &[f32], sin: &[f32]) -> Vec<f32> {
    rotate(grad_y, cos, sin, true)
}
