//! The model in the browser: logits of the same random llama on the page's WebGPU (SwiftShader
//! when headless) and on the CPU backend compiled to wasm must agree — the web lab shows whichever
//! the visitor's browser has, and they must mean the same. Run by `scripts/test-browser.sh` with
//! `wasm-bindgen-test-runner`; natively this file compiles to nothing.
//!
//! Tolerance: 1e-3 absolute on logits of magnitude ~1 (f32 sums in another order through 3
//! layers, softmax and RMSNorm).
#![cfg(all(target_family = "wasm", feature = "wgpu", feature = "flex"))]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and fixtures: a panic is how they report")]

use burn::prelude::*;
use rosetta_model::readback::to_vec_f32;
use rosetta_model::tiny::tiny_config;
use rosetta_model::weights::random::RandomWeights;
use rosetta_model::{CausalLm, Interventions, ModelConfig, Padding, TokenBatch};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn logits_on_webgpu_equal_the_cpu_logits() {
    let gpu = Device::wgpu_options()
        .init_async()
        .await
        .expect("no WebGPU adapter: start Chromium with --enable-unsafe-webgpu --enable-unsafe-swiftshader");
    let config = ModelConfig { num_hidden_layers: 3, ..tiny_config() };
    let weights = RandomWeights::new(&config, 11, 0.2);
    let on = |device: &Device| CausalLm::from_source(&config, &weights, device).expect("tiny model");
    let (cpu_model, gpu_model) = (on(&Device::flex()), on(&gpu));
    // Two rows of different lengths: padding and the causal mask are part of the check.
    let batch =
        TokenBatch::pad(&[vec![256, 72, 101, 108, 108, 111, 32, 116, 104], vec![256, 83, 122, 105, 97]], Padding::Right, 0).unwrap();
    let cpu = to_vec_f32(cpu_model.forward_with(&batch, &Interventions::none()).unwrap().0).await.unwrap();
    let webgpu = to_vec_f32(gpu_model.forward_with(&batch, &Interventions::none()).unwrap().0).await.unwrap();
    assert_eq!(cpu.len(), webgpu.len());
    let worst = cpu.iter().zip(&webgpu).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-3, "WebGPU logits differ from the CPU's by up to {worst}");
    assert!(cpu.iter().any(|v| v.abs() > 0.1), "degenerate logits prove nothing");
}
