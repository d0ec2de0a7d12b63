//! Scaled dot-product attention with its own backward, on host slices (FlashAttention-2's
//! recomputation, Dao 2023, at whole-row granularity: the CPU holds one head's `[seq, kv_len]`
//! scores in cache, so tiling the keys buys nothing at training lengths).
//!
//! Forward keeps only the output and each query's log-sum-exp; backward recomputes the
//! probabilities from them. Grouped-query heads read their shared key/value head in place —
//! no `repeat_kv` copies — and its gradients sum over the group inside one task.
//! Tasks are (batch row, key/value head) pairs on rayon's pool.

use super::exp;
use super::gemm::{MatMut, MatRef, Threads, gemm};
use super::rows::map_tasks;
use super::simd::vectorized;

/// Which keys each query may not see.
#[derive(Clone, Copy, Debug)]
pub enum AttentionMask<'a> {
    /// Query `i` sees keys `0..=past + i` (`past = kv_len − seq`).
    Causal,
    /// `[batch, seq, kv_len]`, true where the key is blocked (the same for every head).
    Blocked(&'a [bool]),
}

/// Sizes of one attention call: `q: [batch, heads, seq, head_dim]`,
/// `k, v: [batch, kv_heads, kv_len, head_dim]`, all row-major.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionShape {
    pub batch: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub seq: usize,
    pub kv_len: usize,
    pub head_dim: usize,
}

impl AttentionShape {
    fn group(&self) -> usize {
        self.heads / self.kv_heads
    }
}

/// The output `[batch, heads, seq, head_dim]` and each query's log-sum-exp `[batch, heads, seq]`.
#[derive(Debug, Clone)]
pub struct AttentionForward {
    pub output: Vec<f32>,
    pub log_sum_exp: Vec<f32>,
}

/// Gradients of the three inputs, in their shapes.
#[derive(Debug, Clone)]
pub struct AttentionGrads {
    pub query: Vec<f32>,
    pub key: Vec<f32>,
    pub value: Vec<f32>,
}

/// Query rows handled at once: each block multiplies only by the keys some row of it may see,
/// which halves the work of causal attention.
const QUERY_BLOCK: usize = 64;

/// The keys `0..limit` that rows `rows` of batch row `b` may see (every later key is blocked).
fn key_limit(mask: AttentionMask<'_>, b: usize, rows: std::ops::Range<usize>, shape: &AttentionShape) -> usize {
    let (s, t) = (shape.seq, shape.kv_len);
    match mask {
        AttentionMask::Causal => t - s + rows.end,
        AttentionMask::Blocked(blocked) => {
            rows.map(|i| keys_up_to_last_open(&blocked[(b * s + i) * t..(b * s + i + 1) * t])).max().unwrap_or(0)
        }
    }
}

/// One past the last key that `blocked` (one query's row of the mask) leaves open; 0 when it
/// blocks every key. Scans 64 keys at a time from the end (a causal row is mostly blocked there).
fn keys_up_to_last_open(blocked: &[bool]) -> usize {
    let mut end = blocked.len();
    while end > 0 {
        let start = end.saturating_sub(64);
        let chunk = &blocked[start..end];
        // A fold, not `all`, so the test of 64 keys vectorises instead of branching per key.
        if !chunk.iter().fold(true, |all, &x| all & x) {
            return start + chunk.iter().rposition(|&x| !x).map_or(0, |j| j + 1);
        }
        end = start;
    }
    0
}

vectorized! {
    /// `-∞` where the row of the mask blocks the key.
    fn block_scores(scores: &mut [f32], blocked: &[bool]) {
        for (v, &x) in scores.iter_mut().zip(blocked) {
            *v = if x { f32::NEG_INFINITY } else { *v };
        }
    }
}

/// `scores ← scale · q kᵀ` over keys `0..limit` (`[rows, limit]`) with blocked keys at `-∞`, for
/// the query rows `rows` of batch row `b`.
#[allow(clippy::too_many_arguments, reason = "one block of one head: its rows, keys, mask and scale")]
fn masked_scores(
    scores: &mut [f32],
    q: MatRef<'_>,
    k: MatRef<'_>,
    scale: f32,
    mask: AttentionMask<'_>,
    b: usize,
    rows: std::ops::Range<usize>,
    shape: &AttentionShape,
) {
    let (s, t) = (shape.seq, shape.kv_len);
    let limit = k.shape().0;
    if limit == 0 {
        // Every key of this block is blocked: there are no scores (the caller marks the rows).
        return;
    }
    gemm(MatMut::row_major(scores, rows.len(), limit), q, k.t(), scale, false, Threads::One);
    for (r, row) in scores.chunks_exact_mut(limit).enumerate() {
        let i = rows.start + r;
        match mask {
            AttentionMask::Causal => row[(t - s + i + 1).min(limit)..].fill(f32::NEG_INFINITY),
            AttentionMask::Blocked(blocked) => block_scores(row, &blocked[(b * s + i) * t..(b * s + i) * t + limit]),
        }
    }
}

/// The views of one task: batch row `b`, key/value head `kvh`.
struct TaskViews<'a> {
    /// `[group · seq, head_dim]`: the task's query heads, one after another.
    q: &'a [f32],
    k: MatRef<'a>,
    v: MatRef<'a>,
}

fn task_views<'a>(shape: &AttentionShape, task: usize, q: &'a [f32], k: &'a [f32], v: &'a [f32]) -> TaskViews<'a> {
    let (g, s, t, d) = (shape.group(), shape.seq, shape.kv_len, shape.head_dim);
    let q_block = g * s * d;
    let kv_block = t * d;
    TaskViews {
        q: &q[task * q_block..(task + 1) * q_block],
        k: MatRef::row_major(&k[task * kv_block..(task + 1) * kv_block], t, d),
        v: MatRef::row_major(&v[task * kv_block..(task + 1) * kv_block], t, d),
    }
}

/// `softmax(scale · q kᵀ + mask) · v`. The caller checks the slice lengths against `shape`.
pub fn attention_forward(shape: &AttentionShape, q: &[f32], k: &[f32], v: &[f32], mask: AttentionMask<'_>, scale: f32) -> AttentionForward {
    let (g, s, t, d) = (shape.group(), shape.seq, shape.kv_len, shape.head_dim);
    let tasks = map_tasks(shape.batch * shape.kv_heads, |task| {
        let b = task / shape.kv_heads;
        let views = task_views(shape, task, q, k, v);
        let mut out = vec![0.0f32; g * s * d];
        let mut lse = vec![0.0f32; g * s];
        let mut scores = vec![0.0f32; QUERY_BLOCK.min(s) * t];
        for h in 0..g {
            let qh = MatRef::row_major(&views.q[h * s * d..(h + 1) * s * d], s, d);
            for i0 in (0..s).step_by(QUERY_BLOCK) {
                let rows = i0..(i0 + QUERY_BLOCK).min(s);
                let limit = key_limit(mask, b, rows.clone(), shape);
                let scores = &mut scores[..rows.len() * limit];
                masked_scores(scores, qh.rows(rows.start, rows.end), views.k.rows(0, limit), scale, mask, b, rows.clone(), shape);
                let lse = &mut lse[h * s + rows.start..h * s + rows.end];
                for (row, l) in scores.chunks_exact_mut(limit.max(1)).zip(lse.iter_mut()) {
                    *l = exp::log_sum_exp(row);
                    exp::exp_shifted(row, *l, 1.0);
                }
                if limit == 0 {
                    lse.fill(f32::NEG_INFINITY);
                }
                let p = MatRef::row_major(scores, rows.len(), limit);
                let out = &mut out[(h * s + rows.start) * d..(h * s + rows.end) * d];
                gemm(MatMut::row_major(out, rows.len(), d), p, views.v.rows(0, limit), 1.0, false, Threads::One);
            }
        }
        (out, lse)
    });
    let mut output = Vec::with_capacity(q.len());
    let mut log_sum_exp = Vec::with_capacity(shape.batch * shape.heads * s);
    for (o, l) in tasks {
        output.extend_from_slice(&o);
        log_sum_exp.extend_from_slice(&l);
    }
    AttentionForward { output, log_sum_exp }
}

/// Gradients of [`attention_forward`] given `∂loss/∂output`, recomputing the probabilities from
/// the saved log-sum-exps.
#[allow(clippy::too_many_arguments, reason = "the inputs, what forward saved, and the upstream gradient")]
pub fn attention_backward(
    shape: &AttentionShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    saved: &AttentionForward,
    grad_output: &[f32],
    mask: AttentionMask<'_>,
    scale: f32,
) -> AttentionGrads {
    let (g, s, t, d) = (shape.group(), shape.seq, shape.kv_len, shape.head_dim);
    let tasks = map_tasks(shape.batch * shape.kv_heads, |task| {
        let b = task / shape.kv_heads;
        let views = task_views(shape, task, q, k, v);
        let block = task * g * s * d;
        let (out, d_out) = (&saved.output[block..block + g * s * d], &grad_output[block..block + g * s * d]);
        let lse = &saved.log_sum_exp[task * g * s..(task + 1) * g * s];
        let mut dq = vec![0.0f32; g * s * d];
        let mut dk = vec![0.0f32; t * d];
        let mut dv = vec![0.0f32; t * d];
        let mut p = vec![0.0f32; QUERY_BLOCK.min(s) * t];
        let mut dp = vec![0.0f32; QUERY_BLOCK.min(s) * t];
        for h in 0..g {
            let head = h * s * d..(h + 1) * s * d;
            let qh = MatRef::row_major(&views.q[head.clone()], s, d);
            let d_oh = MatRef::row_major(&d_out[head.clone()], s, d);
            for i0 in (0..s).step_by(QUERY_BLOCK) {
                let rows = i0..(i0 + QUERY_BLOCK).min(s);
                let (n, limit) = (rows.len(), key_limit(mask, b, rows.clone(), shape));
                if limit == 0 {
                    continue;
                }
                let (q_rows, d_o_rows) = (qh.rows(rows.start, rows.end), d_oh.rows(rows.start, rows.end));
                let (k_seen, v_seen) = (views.k.rows(0, limit), views.v.rows(0, limit));
                let (p, dp) = (&mut p[..n * limit], &mut dp[..n * limit]);
                masked_scores(p, q_rows, k_seen, scale, mask, b, rows.clone(), shape);
                for (row, &l) in p.chunks_exact_mut(limit).zip(&lse[h * s + rows.start..h * s + rows.end]) {
                    exp::exp_shifted(row, l, 1.0);
                }
                let p_ref = MatRef::row_major(p, n, limit);
                // dV += Pᵀ dO; dP = dO Vᵀ
                gemm(MatMut::row_major(&mut dv[..limit * d], limit, d), p_ref.t(), d_o_rows, 1.0, true, Threads::One);
                gemm(MatMut::row_major(dp, n, limit), d_o_rows, v_seen.t(), 1.0, false, Threads::One);
                // dS = P ∘ (dP − rowsum(dO ∘ O)), into dp.
                for r in 0..n {
                    let at = (h * s + rows.start + r) * d;
                    let delta: f32 = d_out[at..at + d].iter().zip(&out[at..at + d]).map(|(a, b)| a * b).sum();
                    for (ds, &pv) in dp[r * limit..(r + 1) * limit].iter_mut().zip(&p[r * limit..(r + 1) * limit]) {
                        *ds = pv * (*ds - delta);
                    }
                }
                let ds = MatRef::row_major(dp, n, limit);
                // dQ = scale · dS K; dK += scale · dSᵀ Q
                let dq_rows = &mut dq[(h * s + rows.start) * d..(h * s + rows.end) * d];
                gemm(MatMut::row_major(dq_rows, n, d), ds, k_seen, scale, false, Threads::One);
                gemm(MatMut::row_major(&mut dk[..limit * d], limit, d), ds.t(), q_rows, scale, true, Threads::One);
            }
        }
        (dq, dk, dv)
    });
    let mut grads =
        AttentionGrads { query: Vec::with_capacity(q.len()), key: Vec::with_capacity(k.len()), value: Vec::with_capacity(v.len()) };
    for (dq, dk, dv) in tasks {
        grads.query.extend_from_slice(&dq);
        grads.key.extend_from_slice(&dk);
        grads.value.extend_from_slice(&dv);
    }
    grads
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_open_key_and_blocked_scores_match_the_plain_loops() {
        for len in [0usize, 1, 63, 64, 65, 200] {
            for open in [None, Some(0), Some(len / 3), Some(len.saturating_sub(1))] {
                let mut blocked = vec![true; len];
                // Open keys at `open` and at a few earlier places (padding inside a row).
                if let Some(at) = open.filter(|&at| at < len) {
                    blocked[at] = false;
                    blocked[at / 2] = false;
                }
                let expected = blocked.iter().rposition(|&x| !x).map_or(0, |j| j + 1);
                assert_eq!(keys_up_to_last_open(&blocked), expected, "len {len}, open {open:?}");

                let mut scores: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 7.0).collect();
                let plain: Vec<f32> = scores.iter().zip(&blocked).map(|(&v, &x)| if x { f32::NEG_INFINITY } else { v }).collect();
                block_scores(&mut scores, &blocked);
                assert_eq!(scores, plain);
            }
        }
    }
}
