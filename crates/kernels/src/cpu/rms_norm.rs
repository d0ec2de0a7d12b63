//! RMSNorm (Zhang & Sennrich 2019; HF `LlamaRMSNorm`) and its gradients, one pass over each row
//! forward and one backward, on host slices: burn composes it from six ops (square, mean, add,
//! sqrt, two products), each a pass over `[tokens, d]` and a step of backward under autodiff.

use super::rows::for_each_row;

/// `y = x · r · γ` per row, `r = 1 / √(mean(x²) + ε)`; returns `y` and each row's `r`.
/// The caller checks that `x` holds whole rows of `gamma.len()`.
pub fn rms_norm_forward(x: &[f32], gamma: &[f32], epsilon: f32) -> (Vec<f32>, Vec<f32>) {
    let d = gamma.len();
    let mut y = x.to_vec();
    let mut inv_rms = vec![0.0f32; x.len() / d];
    for_each_row(&mut y, d, &mut inv_rms, |_, row, r| {
        let mean_square = row.iter().map(|v| v * v).sum::<f32>() / d as f32;
        *r = 1.0 / (mean_square + epsilon).sqrt();
        for (v, g) in row.iter_mut().zip(gamma) {
            *v = *v * *r * g;
        }
    });
    (y, inv_rms)
}

/// `(∂/∂x, ∂/∂γ)` of [`rms_norm_forward`] given `∂loss/∂y` (`∂/∂γ` only when asked for):
/// `∂x = r · γ∘g − x · r³ / d · Σ(γ∘g∘x)`, `∂γ = Σ_rows g∘x · r`.
pub fn rms_norm_backward(x: &[f32], gamma: &[f32], inv_rms: &[f32], grad_y: &[f32], want_gamma: bool) -> (Vec<f32>, Option<Vec<f32>>) {
    let d = gamma.len();
    let mut grad_x = grad_y.to_vec();
    let mut unused = vec![(); inv_rms.len()];
    for_each_row(&mut grad_x, d, &mut unused, |i, row, _| {
        let (xr, r) = (&x[i * d..(i + 1) * d], inv_rms[i]);
        let dot: f32 = row.iter().zip(gamma).zip(xr).map(|((g, w), x)| g * w * x).sum();
        let k = r * r * r * dot / d as f32;
        for ((g, w), x) in row.iter_mut().zip(gamma).zip(xr) {
            *g = r * *g * w - x * k;
        }
    });
    let grad_gamma = want_gamma.then(|| {
        // Summed in f64 in row order: the same value on any number of threads.
        let mut sums = vec![0.0f64; d];
        for (i, (g, xr)) in grad_y.chunks_exact(d).zip(x.chunks_exact(d)).enumerate() {
            let r = f64::from(inv_rms[i]);
            for ((s, g), x) in sums.iter_mut().zip(g).zip(xr) {
                *s += f64::from(*g) * f64::from(*x) * r;
            }
        }
        sums.into_iter().map(|s| s as f32).collect()
    });
    (grad_x, grad_gamma)
}
