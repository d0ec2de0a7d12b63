//! The LM head fused with the cross-entropy loss, on host slices: `[n, vocab]` logits exist one
//! chunk of rows at a time, and the gradients are formed in the same pass (the loss is the end of
//! the graph, so `∂loss/∂logits = w · (softmax − onehot)` is known before backward runs — the
//! trick of Liger's fused linear cross-entropy). Neither the logits nor a log-softmax of the
//! whole batch is ever held: at 49 152 tokens × 1 024 positions each is 200 MB.

use super::exp;
use super::gemm::{MatMut, MatRef, Threads, gemm};
use super::linear::Products;
use super::rows::for_each_row;

/// Rows of logits formed at once: 128 × 49 152 × 4 bytes = 25 MB.
pub const CHUNK_ROWS: usize = 128;

/// `log softmax(row)[target]` of each `vocab`-wide row of `logits`: the target's logit minus the
/// row's log-sum-exp, in one pass over the row after its maximum (scoring's per-token cost; no
/// shifted copy or exponentials are stored). Rows in parallel. `targets[i] < vocab`.
pub fn target_log_probs(logits: &[f32], vocab: usize, targets: &[u32]) -> Vec<f32> {
    assert!(vocab > 0 && logits.len() == targets.len() * vocab, "{} logits for {} rows of {vocab}", logits.len(), targets.len());
    super::rows::map_tasks(targets.len(), |i| {
        let row = &logits[i * vocab..(i + 1) * vocab];
        row[targets[i] as usize] - exp::log_sum_exp(row)
    })
}

/// What [`linear_cross_entropy`] returns: the loss and, when asked for, its gradients.
#[derive(Debug, Clone)]
pub struct CrossEntropyOutput {
    /// `Σ_i w_i · (lse_i − z_{i, t_i})`, summed in f64.
    pub loss: f64,
    /// `∂loss/∂hidden`, `[n, d]` row-major.
    pub hidden_grad: Option<Vec<f32>>,
    /// `∂loss/∂weight`, `[vocab, d]` row-major.
    pub weight_grad: Option<Vec<f32>>,
}

/// The weighted cross-entropy of `logits = hidden · weightᵀ` at `targets`.
///
/// `hidden: [n, d]`, `weight: [vocab, d]` (any strides), `targets[i] < vocab`, `row_weights: [n]`
/// (0 skips a row — its logits, finite or not, add nothing to the loss or the gradients; the
/// mean over a batch is `1 / count` on each counted row). With [`Products::Bf16`] the three
/// products (logits, `∂hidden`, `∂weight`) run on the bf16 route where it applies (see
/// [`Bf16Head`]); the log-sum-exp, the loss and every output stay f32.
pub fn linear_cross_entropy(
    hidden: MatRef<'_>,
    weight: MatRef<'_>,
    targets: &[u32],
    row_weights: &[f32],
    want_hidden_grad: bool,
    want_weight_grad: bool,
    products: Products,
) -> CrossEntropyOutput {
    let ((n, d), (vocab, wd)) = (hidden.shape(), weight.shape());
    assert!(d == wd && targets.len() == n && row_weights.len() == n, "linear_cross_entropy: checked by the caller");
    let bf16 = Bf16Head::new(products, weight, want_hidden_grad);
    let mut hidden_grad = want_hidden_grad.then(|| vec![0.0f32; n * d]);
    let mut weight_grad = want_weight_grad.then(|| vec![0.0f32; vocab * d]);
    let want_grads = want_hidden_grad || want_weight_grad;
    let mut row_loss = vec![0.0f64; n];
    let mut logits = vec![0.0f32; CHUNK_ROWS.min(n) * vocab];
    for start in (0..n).step_by(CHUNK_ROWS) {
        let end = (start + CHUNK_ROWS).min(n);
        let rows = end - start;
        let z = &mut logits[..rows * vocab];
        let h = hidden.rows(start, end);
        if !bf16.as_ref().is_some_and(|b| b.logits(h, z)) {
            gemm(MatMut::row_major(z, rows, vocab), h, weight.t(), 1.0, false, Threads::Pool);
        }
        let losses = &mut row_loss[start..end];
        for_each_row(z, vocab, losses, |i, row, loss| {
            let (target, w) = (targets[start + i] as usize, row_weights[start + i]);
            if w == 0.0 {
                // A skipped row (padding, a prompt) contributes nothing, even non-finite logits.
                *loss = 0.0;
                row.fill(0.0);
                return;
            }
            let lse = exp::log_sum_exp(row);
            *loss = f64::from(w) * f64::from(lse - row[target]);
            if want_grads {
                // w · (softmax − onehot); a skipped row contributes nothing.
                exp::exp_shifted(row, lse, w);
                row[target] -= w;
            }
        });
        if !want_grads {
            continue;
        }
        let g = MatRef::row_major(z, rows, vocab);
        if let Some(dh) = &mut hidden_grad {
            let dh = &mut dh[start * d..end * d];
            if !bf16.as_ref().is_some_and(|b| b.hidden_grad(z, rows, dh)) {
                gemm(MatMut::row_major(dh, rows, d), g, weight, 1.0, false, Threads::Pool);
            }
        }
        if let Some(dw) = &mut weight_grad
            && !bf16.as_ref().is_some_and(|b| b.weight_grad(z, h, dw, start > 0))
        {
            gemm(MatMut::row_major(dw, vocab, d), g.t(), h, 1.0, start > 0, Threads::Pool);
        }
    }
    CrossEntropyOutput { loss: row_loss.iter().sum(), hidden_grad, weight_grad }
}

/// The loss head's products on the bf16 route of the quantized kernels (`crate::quant::bf16`),
/// for [`Products::Bf16`] on a CPU with AVX-512 BF16. The head's panels are packed once per call,
/// for the logits and for `∂hidden`, and every chunk of rows reuses them: per chunk the route
/// would repack SmolLM2's 28 M head values for each product. Each method returns whether it ran;
/// where it did not (a strided operand, a summed dimension that is not whole 32-value blocks),
/// the caller runs the f32 GEMM.
#[cfg(target_arch = "x86_64")]
struct Bf16Head {
    route: crate::quant::bf16::Bf16Route,
    /// The head as `[vocab, d]` panels: `logits = h · Wᵀ`.
    logits: crate::quant::bf16::Bf16Panels,
    /// The head as `[d, vocab]` panels: `∂hidden = g · W`, when that gradient is wanted.
    hidden_grad: Option<crate::quant::bf16::Bf16Panels>,
}

#[cfg(target_arch = "x86_64")]
impl Bf16Head {
    fn new(products: Products, weight: MatRef<'_>, want_hidden_grad: bool) -> Option<Self> {
        use crate::quant::bf16::Bf16Weight;
        let route = products.bf16_route()?;
        let (vocab, d) = weight.shape();
        // A tied embedding is `[vocab, d]` row-major; an untied head in burn's layout is the
        // transpose of a `[d, vocab]` row-major matrix. Both are read in place.
        let (for_logits, for_hidden_grad) = if let Some(values) = weight.as_row_major() {
            (Bf16Weight::Dense { values, rows: vocab, cols: d }, Bf16Weight::DenseInputMajor { values, rows: d, cols: vocab })
        } else if let Some(values) = weight.t().as_row_major() {
            (Bf16Weight::DenseInputMajor { values, rows: vocab, cols: d }, Bf16Weight::Dense { values, rows: d, cols: vocab })
        } else {
            return None;
        };
        let logits = route.pack(&for_logits).ok()?;
        let hidden_grad = if want_hidden_grad { route.pack(&for_hidden_grad).ok() } else { None };
        Some(Bf16Head { route, logits, hidden_grad })
    }

    /// `z = h · Wᵀ`, `[rows, vocab]`.
    fn logits(&self, h: MatRef<'_>, z: &mut [f32]) -> bool {
        use crate::quant::bf16::Bf16Activations;
        let Some(x) = h.as_row_major() else { return false };
        self.route.matmul_packed(&self.logits, Bf16Activations::RowMajor(x), h.shape().0, z, false).is_ok()
    }

    /// `∂hidden = g · W` for the chunk's `g` (`[rows, vocab]`).
    fn hidden_grad(&self, g: &[f32], rows: usize, dh: &mut [f32]) -> bool {
        use crate::quant::bf16::Bf16Activations;
        let Some(panels) = &self.hidden_grad else { return false };
        self.route.matmul_packed(panels, Bf16Activations::RowMajor(g), rows, dh, false).is_ok()
    }

    /// `∂W (+)= gᵀ · h`, `[vocab, d]`: summed over the chunk's rows (whole 32-row blocks only).
    fn weight_grad(&self, g: &[f32], h: MatRef<'_>, dw: &mut [f32], accumulate: bool) -> bool {
        use crate::quant::bf16::{Bf16Activations, Bf16Weight};
        let (rows, d) = h.shape();
        let Some(values) = h.as_row_major() else { return false };
        if !rows.is_multiple_of(32) {
            return false;
        }
        let Ok(panels) = self.route.pack(&Bf16Weight::DenseInputMajor { values, rows: d, cols: rows }) else { return false };
        self.route.matmul_packed(&panels, Bf16Activations::InputMajor(g), self.logits.rows(), dw, accumulate).is_ok()
    }
}

/// Without x86-64 there is no bf16 route: [`Products::Bf16`] runs the f32 GEMM.
#[cfg(not(target_arch = "x86_64"))]
enum Bf16Head {}

#[cfg(not(target_arch = "x86_64"))]
impl Bf16Head {
    fn new(_: Products, _: MatRef<'_>, _: bool) -> Option<Self> {
        None
    }

    fn logits(&self, _: MatRef<'_>, _: &mut [f32]) -> bool {
        match *self {}
    }

    fn hidden_grad(&self, _: &[f32], _: usize, _: &mut [f32]) -> bool {
        match *self {}
    }

    fn weight_grad(&self, _: &[f32], _: MatRef<'_>, _: &mut [f32], _: bool) -> bool {
        match *self {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loss and gradients in f64 from the definition.
    fn reference(h: &[f32], w: &[f32], n: usize, d: usize, v: usize, targets: &[u32], weights: &[f32]) -> (f64, Vec<f64>, Vec<f64>) {
        let (mut loss, mut dh, mut dw) = (0.0, vec![0.0; n * d], vec![0.0; v * d]);
        for i in 0..n {
            let z: Vec<f64> = (0..v).map(|j| (0..d).map(|p| h[i * d + p] as f64 * w[j * d + p] as f64).sum()).collect();
            let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + z.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
            let wi = weights[i] as f64;
            loss += wi * (lse - z[targets[i] as usize]);
            for j in 0..v {
                let g = wi * ((z[j] - lse).exp() - if j == targets[i] as usize { 1.0 } else { 0.0 });
                for p in 0..d {
                    dh[i * d + p] += g * w[j * d + p] as f64;
                    dw[j * d + p] += g * h[i * d + p] as f64;
                }
            }
        }
        (loss, dh, dw)
    }

    #[test]
    fn loss_and_gradients_match_the_definition_across_chunks_and_skipped_rows() {
        let (n, d, v) = (CHUNK_ROWS + 37, 12, 53);
        let h: Vec<f32> = (0..n * d).map(|i| ((i * 7 % 29) as f32 / 29.0 - 0.5) * 3.0).collect();
        let w: Vec<f32> = (0..v * d).map(|i| ((i * 13 % 31) as f32 / 31.0 - 0.5) * 2.0).collect();
        let targets: Vec<u32> = (0..n).map(|i| (i * 11 % v) as u32).collect();
        let weights: Vec<f32> = (0..n).map(|i| if i % 5 == 3 { 0.0 } else { 0.01 }).collect();
        let (loss, dh, dw) = reference(&h, &w, n, d, v, &targets, &weights);
        // The head given transposed ([d, vocab] storage, as an untied `Linear` holds it).
        let mut wt = vec![0.0; v * d];
        for j in 0..v {
            for p in 0..d {
                wt[p * v + j] = w[j * d + p];
            }
        }
        for weight in [MatRef::row_major(&w, v, d), MatRef::row_major(&wt, d, v).t()] {
            let out = linear_cross_entropy(MatRef::row_major(&h, n, d), weight, &targets, &weights, true, true, Products::F32);
            assert!((out.loss - loss).abs() <= 1e-5 * loss.abs(), "{} vs {loss}", out.loss);
            let close = |ours: &[f32], theirs: &[f64]| {
                let scale = theirs.iter().fold(0.0f64, |m, x| m.max(x.abs()));
                ours.iter().zip(theirs).all(|(a, b)| (*a as f64 - b).abs() <= 1e-5 * scale)
            };
            assert!(close(out.hidden_grad.as_deref().unwrap_or_default(), &dh));
            assert!(close(out.weight_grad.as_deref().unwrap_or_default(), &dw));
            assert_eq!(out.hidden_grad.as_ref().map(Vec::len), Some(n * d));
        }
        let forward_only =
            linear_cross_entropy(MatRef::row_major(&h, n, d), MatRef::row_major(&w, v, d), &targets, &weights, false, false, Products::F32);
        assert!(forward_only.hidden_grad.is_none() && forward_only.weight_grad.is_none());
        assert!((forward_only.loss - loss).abs() <= 1e-5 * loss.abs());
    }

    #[test]
    fn a_nan_logit_makes_the_loss_nan() {
        let (h, w) = (vec![1.0, f32::NAN], vec![1.0, 2.0, 3.0, 4.0]);
        let out = linear_cross_entropy(MatRef::row_major(&h, 1, 2), MatRef::row_major(&w, 2, 2), &[0], &[1.0], false, false, Products::F32);
        assert!(out.loss.is_nan());
    }
}
