//! The WGSL kernels on the browser's WebGPU against their plain-tensor references (CPU, flex) in
//! the same page: the parity the native tests check on lavapipe, here through Chromium's WebGPU
//! (SwiftShader when headless). Run by `scripts/test-browser.sh` with `wasm-bindgen-test-runner`;
//! natively this file compiles to nothing.
//!
//! Tolerances are exactly those of `tests/kernels/parity.rs` (lavapipe): loss 1e-5 relative and
//! gradients 1e-5 absolute per element (f32 sums in a different order), Σ x² 1e-5 of its largest
//! value; Wanda scores, maxima and masks exact.
#![cfg(all(target_family = "wasm", feature = "wgpu"))]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and fixtures: a panic is how they report")]
#![allow(
    clippy::disallowed_methods,
    reason = "inputs are made on the CPU (flex) device and copied over with a synchronous read, which is fine off WebGPU; every WebGPU result is read with into_data_async"
)]

use std::cell::RefCell;

use burn::prelude::*;
use burn::tensor::Distribution;
use rosetta_kernels::contrastive::{ContrastiveOptions, contrastive_loss, contrastive_loss_reference};
use rosetta_kernels::masking::{
    Sparsity, apply_mask, apply_mask_reference, feature_stats, feature_stats_reference, prune_mask, prune_mask_reference, wanda_scores,
    wanda_scores_reference,
};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

thread_local! {
    static GPU: RefCell<Option<Device>> = const { RefCell::new(None) };
}

/// The page's WebGPU device; the runtime may be initialised once per page, so later tests reuse it.
async fn gpu() -> Device {
    if let Some(device) = GPU.with(|g| g.borrow().clone()) {
        return device;
    }
    let device = Device::wgpu_options()
        .init_async()
        .await
        .expect("no WebGPU adapter: start Chromium with --enable-unsafe-webgpu --enable-unsafe-swiftshader");
    assert!(rosetta_kernels::is_wgpu(&device), "the initialised device is not burn's wgpu backend");
    GPU.with(|g| *g.borrow_mut() = Some(device.clone()));
    device
}

async fn floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data_async().await.expect("read back").convert::<f32>().try_to_vec::<f32>().unwrap()
}

async fn bools(t: Tensor<2, Bool>) -> Vec<bool> {
    t.into_data_async().await.expect("read back").convert::<bool>().try_to_vec::<bool>().unwrap()
}

fn cpu_random(shape: [usize; 2], seed: u64) -> Tensor<2> {
    let cpu = Device::flex();
    cpu.seed(seed);
    Tensor::<2>::random(shape, Distribution::Normal(0.0, 1.0), &cpu)
}

fn normalised(t: Tensor<2>) -> Tensor<2> {
    let norm = t.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    t / norm
}

/// Every element within `tolerance` (absolute).
fn assert_within(what: &str, got: &[f32], want: &[f32], tolerance: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    assert!(!want.is_empty(), "{what}: nothing to compare");
    let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst <= tolerance, "{what}: max |Δ| {worst:e} > {tolerance:e}");
}

/// The largest magnitude, at least 1: what a relative tolerance is relative to.
fn scale_of(values: &[f32]) -> f32 {
    values.iter().fold(1.0f32, |m, v| m.max(v.abs()))
}

#[wasm_bindgen_test]
async fn contrastive_forward_and_gradients_match_the_reference_on_webgpu() {
    let gpu = gpu().await;
    let gpu_ad = gpu.clone().autodiff();
    let cpu_ad = Device::flex().autodiff();
    for (i, &(n, d)) in [(1, 1), (5, 3), (17, 33), (70, 576)].iter().enumerate() {
        for options in [ContrastiveOptions { scale: 1.0, shift: true }, ContrastiveOptions { scale: 20.0, shift: false }] {
            let a = normalised(cpu_random([n, d], 10 + i as u64)).into_data();
            let p = normalised(cpu_random([n, d], 20 + i as u64)).into_data();

            let a_ref = Tensor::<2>::from_data(a.clone(), &cpu_ad).require_grad();
            let p_ref = Tensor::<2>::from_data(p.clone(), &cpu_ad).require_grad();
            let loss_ref = contrastive_loss_reference(a_ref.clone(), p_ref.clone(), options).unwrap();
            let grads_ref = loss_ref.backward();

            let a_gpu = Tensor::<2>::from_data(a, &gpu_ad).require_grad();
            let p_gpu = Tensor::<2>::from_data(p, &gpu_ad).require_grad();
            let loss_gpu = contrastive_loss(a_gpu.clone(), p_gpu.clone(), options).unwrap();
            let grads_gpu = loss_gpu.backward();

            let what = format!("n={n} d={d} {options:?}");
            let loss_ref = floats(loss_ref).await;
            assert_within(&format!("loss {what}"), &floats(loss_gpu).await, &loss_ref, 1e-5 * scale_of(&loss_ref));
            let (da_ref, dp_ref) = (a_ref.grad(&grads_ref).unwrap(), p_ref.grad(&grads_ref).unwrap());
            let (da_gpu, dp_gpu) = (a_gpu.grad(&grads_gpu).unwrap(), p_gpu.grad(&grads_gpu).unwrap());
            let gradient_tolerance = 1e-5 * options.scale.max(1.0);
            assert_within(&format!("dA {what}"), &floats(da_gpu).await, &floats(da_ref).await, gradient_tolerance);
            assert_within(&format!("dP {what}"), &floats(dp_gpu).await, &floats(dp_ref).await, gradient_tolerance);
        }
    }
}

#[wasm_bindgen_test]
async fn masking_kernels_match_the_reference_on_webgpu() {
    let gpu = gpu().await;
    for (i, &(rows, cols)) in [(1, 1), (3, 8), (33, 100), (64, 576)].iter().enumerate() {
        let w_cpu = cpu_random([rows, cols], 40 + i as u64);
        let norms_cpu = cpu_random([1, cols], 50 + i as u64).abs().reshape([cols]);
        let w_gpu = Tensor::<2>::from_data(w_cpu.to_data(), &gpu);
        let norms_gpu = Tensor::<1>::from_data(norms_cpu.to_data(), &gpu);

        let s_ref = wanda_scores_reference(w_cpu.clone(), norms_cpu).unwrap();
        let s_gpu = wanda_scores(w_gpu.clone(), norms_gpu).unwrap();
        let what = format!("{rows}x{cols}");
        assert_eq!(floats(s_gpu.clone()).await, floats(s_ref.clone()).await, "wanda {what}");

        let mut settings = vec![Sparsity::Unstructured(0.0), Sparsity::Unstructured(0.5), Sparsity::Unstructured(0.9)];
        if cols % 4 == 0 {
            settings.push(Sparsity::NM { n: 2, m: 4 });
        }
        for sparsity in settings {
            // The same scores on both sides, so masks must agree exactly (ties broken by index).
            let scores_gpu = Tensor::<2>::from_data(s_ref.to_data(), &gpu);
            let keep_ref = prune_mask_reference(s_ref.clone(), sparsity).unwrap();
            let keep_gpu = prune_mask(scores_gpu, sparsity).unwrap();
            assert_eq!(bools(keep_gpu.clone()).await, bools(keep_ref.clone()).await, "mask {what} {sparsity:?}");

            let masked_ref = apply_mask_reference(w_cpu.clone(), keep_ref).unwrap();
            let masked_gpu = apply_mask(w_gpu.clone(), keep_gpu).unwrap();
            assert_eq!(floats(masked_gpu).await, floats(masked_ref).await, "apply {what} {sparsity:?}");
        }
    }
}

#[wasm_bindgen_test]
async fn feature_statistics_match_the_reference_on_webgpu() {
    let gpu = gpu().await;
    for (i, &(tokens, features)) in [(1, 1), (7, 33), (300, 576)].iter().enumerate() {
        let x_cpu = cpu_random([tokens, features], 60 + i as u64);
        let mask: Vec<f32> = (0..tokens).map(|t| if t % 3 == 2 { 0.0 } else { 1.0 }).collect();
        let mask_cpu = Tensor::<1>::from_floats(mask.as_slice(), &Device::flex());
        let (sq_ref, max_ref) = feature_stats_reference(x_cpu.clone(), Some(mask_cpu)).unwrap();
        let x_gpu = Tensor::<2>::from_data(x_cpu.to_data(), &gpu);
        let mask_gpu = Tensor::<1>::from_floats(mask.as_slice(), &gpu);
        let (sq_gpu, max_gpu) = feature_stats(x_gpu, Some(mask_gpu)).unwrap();
        let what = format!("{tokens}x{features}");
        let sq_ref = floats(sq_ref).await;
        assert_within(&format!("sum of squares {what}"), &floats(sq_gpu).await, &sq_ref, 1e-5 * scale_of(&sq_ref));
        assert_eq!(floats(max_gpu).await, floats(max_ref).await, "max {what}");
    }
}

/// The WebAssembly SIMD tile of the quantized matmul (the lab's CPU path) against
/// dequantise-then-f32, for both code widths, a single activation row (decoding) and shapes
/// that leave a short last tile and every remainder of the tile's four-block groups (1, 2, 3
/// blocks after whole groups, a row shorter than one group) — the tolerance of the native tile
/// tests (1e-4 of the output scale).
#[wasm_bindgen_test]
fn the_simd128_quantized_tile_matches_the_reference() {
    use rosetta_kernels::quant::{PackedMatrix, QuantizeTo, Tiles, matmul_with, reference_matmul};
    let tiles = Tiles::available();
    assert_eq!(tiles[0].name(), "wasm-simd128", "the wasm32 build must enable simd128 (.cargo/config.toml)");
    let values = |len: usize, seed: u32| -> Vec<f32> {
        (0..len).map(|i| (((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) % 2001) as f32 / 1000.0 - 1.0).collect()
    };
    for to in [QuantizeTo::Q8_0, QuantizeTo::Q4_0, QuantizeTo::Q4_1] {
        for (m, n, k) in [(1, 7, 64), (3, 5, 96), (1, 66, 576), (9, 11, 352), (2, 3, 32), (1, 5, 128), (4, 9, 160)] {
            let w = PackedMatrix::quantize(to, n, k, &values(n * k, (n + k) as u32)).unwrap();
            let x = values(m * k, (m * k) as u32);
            let want = reference_matmul(&w, &x, m);
            let got = matmul_with(tiles[0], &w, &x, m).unwrap();
            assert_within(&format!("{to:?} {m}×{n}×{k}"), &got, &want, 1e-4 * scale_of(&want));
        }
    }
    // Signed codes with half-block scales (Q6_K blocks, arbitrary bytes but a finite scale).
    use rosetta_kernels::quant::GgmlType;
    for (m, n) in [(1, 7), (3, 5)] {
        let q6_k: Vec<u8> = (0..n as u32 * 2)
            .flat_map(|block| {
                let mut bytes: Vec<u8> =
                    (0..210u32).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(block * 7919) >> 13) as u8).collect();
                bytes[208..].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
                bytes
            })
            .collect();
        let w = PackedMatrix::from_ggml(GgmlType::Q6K, n, 512, &q6_k).unwrap();
        let x = values(m * 512, (m * 7) as u32);
        let want = reference_matmul(&w, &x, m);
        let got = matmul_with(tiles[0], &w, &x, m).unwrap();
        assert_within(&format!("Q6_K {m}×{n}×512"), &got, &want, 1e-4 * scale_of(&want));
    }
}

/// The WGSL quantized matmul on the page's WebGPU against the dequantised weight times x on the
/// CPU: 4-bit codes with mins, bytes, and signed bytes with half-block scales (Q6_K blocks whose
/// bytes are arbitrary but for a finite scale).
#[wasm_bindgen_test]
async fn quantized_matmul_matches_the_dequantised_weight_on_webgpu() {
    use rosetta_kernels::quant::device::matmul_reference;
    use rosetta_kernels::quant::{DevicePackedMatrix, GgmlType, PackedMatrix, QuantizeTo};
    let gpu = gpu().await;
    let values = |len: usize, seed: u32| -> Vec<f32> {
        (0..len).map(|i| (((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) % 2001) as f32 / 1000.0 - 1.0).collect()
    };
    let q6_k: Vec<u8> = (0..3 * 2)
        .flat_map(|block| {
            let mut bytes: Vec<u8> = (0..210u32).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(block * 7919) >> 13) as u8).collect();
            bytes[208..].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
            bytes
        })
        .collect();
    let cases = [
        ("Q4_1", PackedMatrix::quantize(QuantizeTo::Q4_1, 70, 96, &values(70 * 96, 1)).unwrap()),
        ("Q8_0", PackedMatrix::quantize(QuantizeTo::Q8_0, 33, 64, &values(33 * 64, 2)).unwrap()),
        ("Q6_K", PackedMatrix::from_ggml(GgmlType::Q6K, 3, 512, &q6_k).unwrap()),
    ];
    for (name, w) in cases {
        let on_gpu = DevicePackedMatrix::upload(&w, &gpu).unwrap();
        for m in [1, 5] {
            let x = values(m * w.cols(), (m * 31) as u32);
            let want =
                floats(matmul_reference(&w, Tensor::<2>::from_data(TensorData::new(x.clone(), [m, w.cols()]), &Device::flex()))).await;
            let got = floats(on_gpu.matmul(Tensor::<2>::from_data(TensorData::new(x, [m, w.cols()]), &gpu)).unwrap()).await;
            assert_within(&format!("{name}, {m} rows"), &got, &want, 1e-5 * scale_of(&want));
        }
    }
}

#[wasm_bindgen_test]
async fn bad_input_is_an_error_on_webgpu_too() {
    let gpu = gpu().await;
    let w = Tensor::<2>::ones([4, 8], &gpu);
    assert!(prune_mask(w.clone(), Sparsity::Unstructured(1.0)).is_err());
    assert!(prune_mask(w.clone(), Sparsity::NM { n: 4, m: 4 }).is_err());
    assert!(wanda_scores(w.clone(), Tensor::<1>::ones([7], &gpu)).is_err());
    let a = Tensor::<2>::ones([3, 8], &gpu);
    let err = contrastive_loss(a, w, ContrastiveOptions { scale: 1.0, shift: false }).unwrap_err();
    assert!(err.to_string().contains("[4, 8]"), "the error should name the mismatched shape: {err}");
}
