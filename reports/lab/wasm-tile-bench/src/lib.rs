//! Exports for `bench.mjs`: SmolLM2-135M-shaped Q4_1 weights (random codes and scales), one
//! decoding step's projections through the crate's tile, one weight against many activation rows
//! on the integer tile and on dequantise + f32 GEMM (the `gemm` crate, as burn's CPU backend runs
//! it), and a parity check of the tile against `reference_matmul`.
#![allow(unsafe_code, clippy::missing_safety_doc)]

use std::cell::RefCell;

use rosetta_kernels::quant::{GgmlType, PackedMatrix, QuantizeTo, QuantizedRows, Tiles, matmul_quantized, matmul_with, reference_matmul};

fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len).map(|i| (((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) % 2001) as f32 / 1000.0 - 1.0).collect()
}

/// Q4_1 blocks (f16 scale, f16 min, 16 bytes of codes) with arbitrary codes and small scales.
fn q4_1(rows: usize, cols: usize, seed: u64) -> PackedMatrix {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as u32
    };
    let mut bytes = Vec::with_capacity(rows * cols / 32 * 20);
    for _ in 0..rows * cols / 32 {
        bytes.extend([0x1f, 0x20, 0x1f, 0xa0]); // scale ≈ 0.008, min ≈ -0.008
        bytes.extend((0..16).map(|_| next() as u8));
    }
    PackedMatrix::from_ggml(GgmlType::Q4_1, rows, cols, &bytes).expect("whole Q4_1 blocks")
}

struct Step {
    weights: Vec<PackedMatrix>,
    inputs: [QuantizedRows; 2],
}

thread_local! {
    static STEP: RefCell<Option<Step>> = const { RefCell::new(None) };
    static WEIGHT: PackedMatrix = q4_1(1536, 576, 5);
}

/// Builds one decoding step's weights: 30 layers of q, k, v, o, gate, up, down and the 49 152-row head.
#[unsafe(no_mangle)]
pub extern "C" fn setup() {
    let mut weights = Vec::new();
    for layer in 0..30u64 {
        for (i, &(rows, cols)) in [(576, 576), (192, 576), (192, 576), (576, 576), (1536, 576), (1536, 576), (576, 1536)].iter().enumerate()
        {
            weights.push(q4_1(rows, cols, layer * 8 + i as u64));
        }
    }
    weights.push(q4_1(49_152, 576, 999));
    let inputs = [576, 1536].map(|k| QuantizedRows::quantize(&values(k, k as u32), 1, k));
    STEP.with(|s| *s.borrow_mut() = Some(Step { weights, inputs }));
}

/// One decoding step: every projection of the model on one activation row.
#[unsafe(no_mangle)]
pub extern "C" fn step() -> f32 {
    STEP.with(|s| {
        let s = s.borrow();
        let Some(step) = s.as_ref() else { return f32::NAN };
        let mut last = 0.0;
        for w in &step.weights {
            let x = &step.inputs[usize::from(w.cols() != 576)];
            last = matmul_quantized(Tiles::best(), w, x).map_or(f32::NAN, |y| y[0]);
        }
        last
    })
}

/// `m` activation rows through one 1536 × 576 Q4_1 weight: `route` 0 the integer tile (with the
/// activations' quantization), 1 the weight dequantised and multiplied by f32 GEMM (as the model's
/// dequantised route runs it, a slice at a time).
#[unsafe(no_mangle)]
pub extern "C" fn rows(m: usize, route: u32) -> f32 {
    WEIGHT.with(|w| rows_through(w, m, route))
}

fn rows_through(w: &PackedMatrix, m: usize, route: u32) -> f32 {
    let (n, k) = (w.rows(), w.cols());
    let x = values(m * k, 9);
    if route == 0 {
        return matmul_with(Tiles::best(), w, &x, m).map_or(f32::NAN, |y| y[0]);
    }
    let weights = w.dequantize();
    let mut out = vec![0f32; m * n];
    // SAFETY: `out` is m × n, `x` m × k and `weights` n × k, with the strides given.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            x.as_ptr(),
            1,
            k as isize,
            weights.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    out[0]
}

/// The largest difference between the tile and `reference_matmul`, relative to each result's
/// largest value, over every remainder of the tile's block groups and short last tiles.
#[unsafe(no_mangle)]
pub extern "C" fn parity() -> f32 {
    let mut worst = 0f32;
    for to in [QuantizeTo::Q8_0, QuantizeTo::Q4_0, QuantizeTo::Q4_1] {
        for (m, n, k) in [(1, 7, 64), (3, 5, 96), (1, 66, 576), (9, 11, 352), (2, 3, 32), (1, 5, 128), (4, 9, 160)] {
            let Ok(w) = PackedMatrix::quantize(to, n, k, &values(n * k, (n + k) as u32)) else { return f32::NAN };
            let x = values(m * k, (m * k) as u32);
            let want = reference_matmul(&w, &x, m);
            let Ok(got) = matmul_with(Tiles::best(), &w, &x, m) else { return f32::NAN };
            let scale = want.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-6);
            worst = got.iter().zip(&want).fold(worst, |a, (g, e)| a.max((g - e).abs() / scale));
        }
    }
    worst
}
