//! `y = x · Wᵀ` for a [`PackedMatrix`] `W` on the CPU: activations quantized to 16 bits per block
//! ([`QuantizedRows`]), integer block dot products in SIMD tiles, one f32 scale product per
//! block, the weights' mins applied through the activations' block sums — the scheme of
//! llama.cpp's `ggml_vec_dot_q4_1_q8_1` with wider activations, for every packed type at once.
//!
//! Work is split into tasks of (activation rows × weight rows), run on rayon's pool where the target has threads
//! (`has_threads`: native, or the lab's threaded wasm module), in order otherwise. The plain reference is [`block_scalar`] (and, one level up,
//! dequantise-then-f32 on the dequantised activations: [`reference_matmul`]).

use std::ops::Range;

use super::activation::QuantizedRows;
use super::packed::{BLOCK, PackedMatrix};
use crate::error::{KernelError, Result};

/// An instruction set for the tiles; [`Tiles::best`] is the fastest this CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tiles {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    X86(super::x86::X86Tiles),
    /// WebAssembly SIMD (builds with `simd128`: the lab's).
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    Simd128,
}

impl Tiles {
    /// Every tile set this CPU can run, fastest first (the scalar reference last).
    pub fn available() -> Vec<Tiles> {
        #[cfg(target_arch = "x86_64")]
        let simd = super::x86::X86Tiles::detect().into_iter().map(Tiles::X86);
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        let simd = std::iter::once(Tiles::Simd128);
        #[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
        let simd = std::iter::empty();
        simd.chain([Tiles::Scalar]).collect()
    }

    pub fn best() -> Tiles {
        Self::available()[0]
    }

    pub fn name(self) -> &'static str {
        match self {
            Tiles::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Tiles::X86(t) => t.name(),
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Tiles::Simd128 => "wasm-simd128",
        }
    }

    fn block(self, w: &PackedMatrix, w_rows: Range<usize>, x: &QuantizedRows, x_rows: Range<usize>, out: &mut [f32]) {
        match self {
            Tiles::Scalar => block_scalar(w, w_rows, x, x_rows, out),
            #[cfg(target_arch = "x86_64")]
            Tiles::X86(t) => t.block(w, w_rows, x, x_rows, out),
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Tiles::Simd128 => super::wasm::block(w, w_rows, x, x_rows, out),
        }
    }
}

/// The plain reference tile: `out[c · w_rows.len() + r] = Σ_b (s_x · Σ_sub s_w · Σ code·q) + min_w · sum_x`
/// for weight rows `w_rows` and activation rows `x_rows` (both relative to `out`'s origin); one
/// weight scale per block, or one per 16-element half for signed codes (which have no min).
pub fn block_scalar(w: &PackedMatrix, w_rows: Range<usize>, x: &QuantizedRows, x_rows: Range<usize>, out: &mut [f32]) {
    let nr = w_rows.len();
    let width = w.width();
    let bb = width.block_bytes();
    let nb = w.blocks_per_row();
    let subs = width.scales_per_block();
    let sub_len = BLOCK / subs;
    for (oc, c) in x_rows.enumerate() {
        let (xq, xs, xsum) = x.row(c);
        for (or, r) in w_rows.clone().enumerate() {
            let (codes, ws, wm) = w.row(r);
            let mut acc = 0f32;
            for b in 0..nb {
                let block = &codes[b * bb..(b + 1) * bb];
                let mut scaled = 0f32;
                for sub in 0..subs {
                    let dot: i64 = (sub * sub_len..(sub + 1) * sub_len)
                        .map(|j| PackedMatrix::code(width, block, j) as i64 * xq[QuantizedRows::position(nb, b, j)] as i64)
                        .sum();
                    scaled += dot as f32 * ws[b * subs + sub];
                }
                acc += scaled * xs[b];
                if width.has_mins() {
                    acc += wm[b] * xsum[b];
                }
            }
            out[oc * nr + or] = acc;
        }
    }
}

/// Activation rows per task when there are several.
const X_ROWS_PER_TASK: usize = 16;

/// `x · Wᵀ`: `x` is `[m, cols]` row-major, the result `[m, rows]`.
pub fn matmul(w: &PackedMatrix, x: &[f32], m: usize) -> Result<Vec<f32>> {
    matmul_with(Tiles::best(), w, x, m)
}

/// [`matmul`] on a chosen tile set (the parity tests run each one).
pub fn matmul_with(tiles: Tiles, w: &PackedMatrix, x: &[f32], m: usize) -> Result<Vec<f32>> {
    let k = w.cols();
    if m.checked_mul(k) != Some(x.len()) {
        return Err(KernelError::Shape {
            op: "quantized matmul",
            reason: format!("{} activation values are not {m} rows of the weight's {k} inputs", x.len()),
        });
    }
    let xq = QuantizedRows::quantize(x, m, k);
    matmul_quantized(tiles, w, &xq)
}

/// [`matmul`] on activations already quantized.
pub fn matmul_quantized(tiles: Tiles, w: &PackedMatrix, xq: &QuantizedRows) -> Result<Vec<f32>> {
    Ok(matmul_many(tiles, &[w], xq)?.pop().unwrap_or_default())
}

/// `x · Wᵢᵀ` for several weights that read the same activations (q/k/v, gate/up), quantized
/// once and run as one set of tasks: one wake-up of the thread pool instead of one per weight,
/// which is most of a decoding step's overhead at batch 1. Weights must have `xq.cols` inputs.
pub fn matmul_many(tiles: Tiles, weights: &[&PackedMatrix], xq: &QuantizedRows) -> Result<Vec<Vec<f32>>> {
    if let Some(w) = weights.iter().find(|w| w.cols() != xq.cols) {
        return Err(KernelError::Shape {
            op: "quantized matmul",
            reason: format!("a {}×{} weight cannot multiply activations of width {}", w.rows(), w.cols(), xq.cols),
        });
    }
    let m = xq.rows;
    if m == 0 {
        return Ok(weights.iter().map(|_| Vec::new()).collect());
    }
    let threads = thread_count();
    if threads == 1 && m == 1 {
        // One activation row without threads (the lab's single-thread module): each weight in one
        // pass, straight into its output — no tasks to collect and copy.
        return Ok(weights
            .iter()
            .map(|w| {
                let mut out = vec![0f32; w.rows()];
                tiles.block(w, 0..w.rows(), xq, 0..1, &mut out);
                out
            })
            .collect());
    }
    let x_chunk = if m == 1 { 1 } else { X_ROWS_PER_TASK };
    let x_tasks = m.div_ceil(x_chunk);
    let total_rows: usize = weights.iter().map(|w| w.rows()).sum::<usize>().max(1);
    // Per weight, rows per task: its share of ~4 tasks per thread, at least 64 rows (a few KB).
    let w_chunks: Vec<usize> = weights
        .iter()
        .map(|w| {
            let n = w.rows();
            let wanted = (4 * threads * n).div_ceil(total_rows * x_tasks).max(1);
            n.div_ceil(wanted).max(64).next_multiple_of(4).min(n.max(1))
        })
        .collect();
    let mut tasks = Vec::new();
    for (i, w) in weights.iter().enumerate() {
        for xt in 0..x_tasks {
            for w0 in (0..w.rows()).step_by(w_chunks[i].max(1)) {
                tasks.push((i, xt * x_chunk..((xt + 1) * x_chunk).min(m), w0..(w0 + w_chunks[i]).min(w.rows())));
            }
        }
    }
    let parts = run_tasks(tasks.len(), |t| {
        let (i, xr, wr) = tasks[t].clone();
        let mut out = vec![0f32; xr.len() * wr.len()];
        tiles.block(weights[i], wr, xq, xr, &mut out);
        out
    });
    let mut outs: Vec<Vec<f32>> = weights.iter().map(|w| vec![0f32; m * w.rows()]).collect();
    for ((i, xr, wr), part) in tasks.into_iter().zip(parts) {
        let n = weights[i].rows();
        for (row, values) in xr.zip(part.chunks_exact(wr.len().max(1))) {
            outs[i][row * n + wr.start..row * n + wr.end].copy_from_slice(values);
        }
    }
    Ok(outs)
}

/// Threads the tasks of a matmul run on (rayon's pool with `has_threads`, one otherwise).
#[cfg(has_threads)]
pub(super) fn thread_count() -> usize {
    rayon::current_num_threads()
}

#[cfg(not(has_threads))]
pub(super) fn thread_count() -> usize {
    1
}

/// `task(0..count)` on rayon's pool with `has_threads` (in order otherwise), results in task order.
#[cfg(has_threads)]
pub(super) fn run_tasks<R: Send>(count: usize, task: impl Fn(usize) -> R + Sync + Send) -> Vec<R> {
    use rayon::prelude::*;
    if count == 1 {
        return vec![task(0)];
    }
    crate::cpu::pool::keep_awake();
    (0..count).into_par_iter().map(task).collect()
}

#[cfg(not(has_threads))]
pub(super) fn run_tasks<R>(count: usize, task: impl Fn(usize) -> R) -> Vec<R> {
    (0..count).map(task).collect()
}

/// Dequantise-then-f32: the dequantised weight times the dequantised 16-bit activations, in f64
/// sums. What every tile set must equal within float rounding.
pub fn reference_matmul(w: &PackedMatrix, x: &[f32], m: usize) -> Vec<f32> {
    let (n, k) = (w.rows(), w.cols());
    let weights = w.dequantize();
    let xq = QuantizedRows::quantize(x, m, k).dequantize();
    let mut out = vec![0f32; m * n];
    for c in 0..m {
        for r in 0..n {
            let dot: f64 = (0..k).map(|j| weights[r * k + j] as f64 * xq[c * k + j] as f64).sum();
            out[c * n + r] = dot as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::packed::QuantizeTo;

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len).map(|i| (((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) % 2001) as f32 / 1000.0 - 1.0).collect()
    }

    fn assert_close(got: &[f32], expected: &[f32], what: &str) {
        assert_eq!(got.len(), expected.len(), "{what}");
        let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        for (i, (g, e)) in got.iter().zip(expected).enumerate() {
            assert!((g - e).abs() <= 1e-4 * scale, "{what}, element {i}: {g} vs {e} (scale {scale})");
        }
    }

    /// Every tile set equals dequantise-then-f32 for every packed type, at shapes that leave
    /// remainders in both tile directions and a single activation row (decoding).
    #[test]
    fn every_tile_set_matches_the_reference_for_every_type() {
        // Block counts: 2, 3 (a pair and an odd block), 8, 11 (a full eight-block min step and a
        // tail), 16.
        let shapes = [(1, 7, 64), (3, 5, 96), (9, 11, 256), (5, 9, 352), (16, 66, 512)];
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            assert!(Tiles::available().len() >= 2, "the AVX2 tiles must be among those tested here");
        }
        eprintln!("tile sets tested: {:?}", Tiles::available().iter().map(|t| t.name()).collect::<Vec<_>>());
        for tiles in Tiles::available() {
            for ty in crate::quant::packed::tests::PACKED {
                for &(m, n, k) in &shapes {
                    if k % ty.block_size() != 0 {
                        continue;
                    }
                    let bytes = crate::quant::packed::tests::random_ggml_bytes(ty, n * k / ty.block_size(), (m * n + k) as u64);
                    let w = PackedMatrix::from_ggml(ty, n, k, &bytes).unwrap();
                    let x = values(m * k, (n * k) as u32);
                    let got = matmul_with(tiles, &w, &x, m).unwrap();
                    assert_close(&got, &reference_matmul(&w, &x, m), &format!("{} {} {m}×{n}×{k}", tiles.name(), ty.name()));
                }
            }
        }
    }

    /// Signed codes at widths GGUF never has (an odd last block: 3 and 11 blocks per row).
    #[test]
    fn every_tile_set_matches_the_reference_for_signed_codes_at_any_width() {
        for tiles in Tiles::available() {
            for (m, n, k) in [(1, 7, 64), (3, 5, 96), (5, 9, 352), (4, 4, 32)] {
                let w = crate::quant::packed::tests::random_signed(n, k, (m * n + k) as u64);
                let x = values(m * k, (n * k) as u32);
                let got = matmul_with(tiles, &w, &x, m).unwrap();
                assert_close(&got, &reference_matmul(&w, &x, m), &format!("{} signed {m}×{n}×{k}", tiles.name()));
            }
        }
    }

    /// Many weight rows (several tasks per activation row, the scatter path) and many activation
    /// rows (several tasks the other way).
    #[test]
    fn task_splits_put_every_row_in_its_place() {
        let (m, n, k) = (37, 300, 64);
        let w = PackedMatrix::quantize(QuantizeTo::Q4_1, n, k, &values(n * k, 3)).unwrap();
        let x = values(m * k, 5);
        assert_close(&matmul(&w, &x, m).unwrap(), &reference_matmul(&w, &x, m), "37×300×64");
        let x1 = values(k, 9);
        assert_close(&matmul(&w, &x1, 1).unwrap(), &reference_matmul(&w, &x1, 1), "1×300×64");
    }

    /// The 16-bit activations are the kernels' only approximation beyond the weights' own: against
    /// the f32 activations the result stays within 1e-4 of the output scale.
    #[test]
    fn activation_quantization_error_is_small() {
        let (m, n, k) = (4, 32, 576);
        let w = PackedMatrix::quantize(QuantizeTo::Q8_0, n, k, &values(n * k, 1)).unwrap();
        let x = values(m * k, 2);
        let got = matmul(&w, &x, m).unwrap();
        let weights = w.dequantize();
        let exact: Vec<f32> =
            (0..m * n).map(|i| (0..k).map(|j| weights[(i % n) * k + j] as f64 * x[(i / n) * k + j] as f64).sum::<f64>() as f32).collect();
        let scale = exact.iter().fold(0f32, |a, v| a.max(v.abs()));
        let worst = got.iter().zip(&exact).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst <= 1e-4 * scale, "worst {worst}, scale {scale}");
    }

    #[test]
    fn a_wrong_activation_length_is_an_error() {
        let w = PackedMatrix::quantize(QuantizeTo::Q8_0, 2, 32, &[0.5; 64]).unwrap();
        let err = matmul(&w, &[0.0; 31], 1).unwrap_err().to_string();
        assert!(err.contains("31 activation values"), "{err}");
        assert_eq!(matmul(&w, &[], 0).unwrap(), Vec::<f32>::new());
        let wide = QuantizedRows::quantize(&[0.5; 64], 1, 64);
        assert!(matmul_quantized(Tiles::Scalar, &w, &wide).unwrap_err().to_string().contains("width 64"));
    }
}
