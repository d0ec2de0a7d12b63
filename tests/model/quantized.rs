//! The quantized path (packed weights, integer kernels) against the f32 path on the same
//! checkpoint: a tiny Q8_0 GGUF (mixed packed and f32 projections, llama.cpp's Q/K order) logit for
//! logit, and the real default model (SmolLM2-135M Q4_1) in bits per character on the embedded
//! test split and in greedy continuations. Bad input: `--quantize` of a quantized checkpoint.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and fixtures: a panic is how they report")]

use rosetta_data::corpus::CorpusDir;
use rosetta_data::{BadLines, ParallelCorpus};
use rosetta_model::burn::prelude::*;
use rosetta_model::generate::{GenerationConfig, Sampling, generate_blocking};
use rosetta_model::nn::projection::CpuRoute;
use rosetta_model::scoring::{ScoreOptions, score_texts_blocking};
use rosetta_model::{CausalLm, Checkpoint, Interventions, Precision, QuantizeTo, TokenBatch};
use rosetta_tests::fixtures::tiny_gguf_q8_0;
use rosetta_tests::*;

fn logits(model: &CausalLm, ids: &[Vec<u32>]) -> Vec<f32> {
    let batch = TokenBatch::pad(ids, rosetta_model::Padding::Right, 0).unwrap();
    model.forward(&batch).into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn tiny_quantized_checkpoint() -> Checkpoint {
    let dir = temp_dir("quantized-tiny");
    let path = dir.join("tiny-q8_0.gguf");
    std::fs::write(&path, tiny_gguf_q8_0()).unwrap();
    Checkpoint::open(&path, None).unwrap()
}

/// Packed weights give the f32 path's logits: the only difference is the 16-bit activations.
/// Also at a size that takes the route of many rows (`BF16_ROWS` on CPUs with AVX-512 BF16,
/// `DEQUANTIZED_ROWS` elsewhere) and for a batch mixing lengths.
#[test]
fn a_packed_tiny_gguf_matches_its_f32_load() {
    let checkpoint = tiny_quantized_checkpoint();
    let packed = checkpoint.load_with(&Device::flex(), Precision::Auto).unwrap();
    let dense = checkpoint.load_with(&Device::flex(), Precision::F32).unwrap();
    let (packed_count, all) = packed.packed_projections();
    assert_eq!((packed_count, all), (12, 14), "every projection but ffn_down (rows of 48) is packed");
    assert!(packed.packed_head.is_some(), "the Q8_0 head is packed");
    assert_eq!(dense.packed_projections().0, 0);

    // `short` runs the integer kernels, `long` (360 rows) the route of many rows: bf16 panels on
    // CPUs with AVX-512 BF16, dequantised f32 GEMM elsewhere.
    let short: Vec<Vec<u32>> = vec![vec![256, 116, 104, 101], vec![256, 259, 97]];
    let long: Vec<Vec<u32>> = (0..3).map(|r| (0..120).map(|i| ((i * 7 + r * 13) % 255) as u32).collect()).collect();
    for ids in [short, long] {
        let route = CpuRoute::for_rows(ids.len() * ids[0].len());
        let (ours, reference) = (logits(&packed, &ids), logits(&dense, &ids));
        let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
        let mean_scale = reference.iter().map(|v| v.abs()).sum::<f32>() / reference.len() as f32;
        let delta = max_abs_diff(&ours, &reference);
        let mean_delta = ours.iter().zip(&reference).map(|(a, b)| (a - b).abs()).sum::<f32>() / reference.len() as f32;
        eprintln!(
            "{} rows × {} tokens ({}): max |Δlogit| {delta:.2e} (scale {scale:.2}), mean {mean_delta:.2e} (mean |logit| {mean_scale:.2})",
            ids.len(),
            ids[0].len(),
            route.name()
        );
        if route == CpuRoute::Integer || route == CpuRoute::Dequantized {
            assert!(delta <= 1e-3 * scale, "max |Δlogit| = {delta:e}, logits up to {scale}");
        } else {
            // bf16 keeps 8 bits of every weight and activation: this random tiny model's logits
            // move by a few percent at most, and by about 2⁻⁸ on average; a wiring error (a wrong
            // or transposed weight) moves them by their whole size.
            assert!(delta <= 0.1 * scale && mean_delta <= 1e-2 * mean_scale, "bf16: max |Δlogit| {delta:e}, mean {mean_delta:e}");
        }
    }

    let config = GenerationConfig { max_new_tokens: 16, sampling: Sampling::Greedy, ..Default::default() };
    let prompts = vec![vec![256, 116, 104]];
    let a = generate_blocking(&packed, &prompts, &config, &Interventions::none(), |_, _| {}).unwrap();
    let b = generate_blocking(&dense, &prompts, &config, &Interventions::none(), |_, _| {}).unwrap();
    assert_eq!(a.tokens, b.tokens, "greedy continuations differ");
}

/// On a wgpu device (lavapipe in CI) the same checkpoint stays packed in GPU buffers, its
/// projections and head run through the WGSL kernel, and the logits equal the f32 load on the
/// CPU — closer than the CPU's packed path, which quantizes the activations too.
#[test]
fn a_packed_tiny_gguf_on_wgpu_matches_its_f32_load() {
    let Some(gpu) = wgpu_device() else { return };
    let checkpoint = tiny_quantized_checkpoint();
    let packed = checkpoint.load_with(&gpu, Precision::Auto).unwrap();
    let dense = checkpoint.load_with(&Device::flex(), Precision::F32).unwrap();
    assert_eq!(packed.packed_projections(), (12, 14), "every projection but ffn_down (rows of 48) is packed");
    assert!(packed.packed_head.as_ref().is_some_and(|h| h.on_device.is_some()), "the Q8_0 head is packed on the GPU");
    let ids: Vec<Vec<u32>> = vec![vec![256, 116, 104, 101], vec![256, 259, 97]];
    let (ours, reference) = (logits(&packed, &ids), logits(&dense, &ids));
    let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
    let delta = max_abs_diff(&ours, &reference);
    eprintln!("wgpu, packed: max |Δlogit| {delta:.2e} (scale {scale:.2})");
    assert!(delta <= 1e-4 * scale, "max |Δlogit| = {delta:e}, logits up to {scale}");
    let config = GenerationConfig { max_new_tokens: 8, sampling: Sampling::Greedy, ..Default::default() };
    let prompts = vec![vec![256, 116, 104]];
    let a = generate_blocking(&packed, &prompts, &config, &Interventions::none(), |_, _| {}).unwrap();
    let b = generate_blocking(&dense, &prompts, &config, &Interventions::none(), |_, _| {}).unwrap();
    assert_eq!(a.tokens, b.tokens, "greedy continuations differ");
}

/// Dense weights laid out input-major on wgpu (`ROSETTA_WGPU_DENSE_LAYOUT=input-major` in the CLI: HF's rows
/// viewed as burn's `[in, out]`, for the matrix × vector kernels autotuning picks) give the f32
/// load's logits and continuations; other devices keep the output-major layout.
#[test]
fn an_input_major_dense_layout_on_wgpu_computes_the_same_model() {
    use rosetta_model::DenseLayout;
    let Some(gpu) = wgpu_device() else { return };
    // For this process (a test of its own under nextest; under `cargo test` another test loading
    // on wgpu meanwhile would get the same values in the other layout).
    DenseLayout::set_for_wgpu(DenseLayout::InputMajor);
    assert_eq!(DenseLayout::for_device(&gpu), DenseLayout::InputMajor);
    assert_eq!(DenseLayout::for_device(&Device::flex()), DenseLayout::OutputMajor);
    let checkpoint = tiny_quantized_checkpoint();
    let input_major = checkpoint.load_with(&gpu, Precision::F32).unwrap();
    let dense = checkpoint.load_with(&Device::flex(), Precision::F32).unwrap();
    let ids: Vec<Vec<u32>> = vec![vec![256, 116, 104, 101], vec![256, 259, 97]];
    let (ours, reference) = (logits(&input_major, &ids), logits(&dense, &ids));
    let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
    let delta = max_abs_diff(&ours, &reference);
    assert!(delta <= 1e-4 * scale, "max |Δlogit| = {delta:e}, logits up to {scale}");
    let id = rosetta_model::LinearId::new(1, rosetta_model::LinearKind::UpProj);
    let read = input_major.weight(id).unwrap().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    assert_eq!(read, dense.weight(id).unwrap().into_data().try_to_vec::<f32>().unwrap(), "the weight reads back in burn's [in, out] order");
    let config = GenerationConfig { max_new_tokens: 8, sampling: Sampling::Greedy, ..Default::default() };
    let prompts = vec![vec![256, 116, 104]];
    let a = generate_blocking(&input_major, &prompts, &config, &Interventions::none(), |_, _| {}).unwrap();
    let b = generate_blocking(&dense, &prompts, &config, &Interventions::none(), |_, _| {}).unwrap();
    assert_eq!(a.tokens, b.tokens, "greedy continuations differ");
}

/// Editing a packed weight makes that projection dense; reading one dequantises it.
#[test]
fn editing_a_packed_projection_makes_it_dense() {
    let checkpoint = tiny_quantized_checkpoint();
    let mut packed = checkpoint.load_with(&Device::flex(), Precision::Auto).unwrap();
    let dense = checkpoint.load_with(&Device::flex(), Precision::F32).unwrap();
    let id = rosetta_model::LinearId::new(1, rosetta_model::LinearKind::QProj);
    let read = packed.weight(id).unwrap().into_data().try_to_vec::<f32>().unwrap();
    assert!(max_abs_diff(&read, &dense.weight(id).unwrap().into_data().try_to_vec::<f32>().unwrap()) <= 1e-6);
    assert!(packed.linear(id).unwrap_err().to_string().contains("--precision f32"));
    let zeros = Tensor::<2>::zeros(packed.weight(id).unwrap().dims(), &Device::flex());
    packed.set_weight(id, zeros).unwrap();
    assert_eq!(packed.packed_projections().0, 11);
    assert!(packed.linear(id).is_ok());
    assert_eq!(packed.weight(id).unwrap().abs().sum().into_scalar::<f32>(), 0.0);
}

/// `Interventions::dense_in_bf16` puts dense f32 projections on the bf16 route beside the packed
/// ones: a model whose packed projections were replaced by their own dequantised values (as
/// pruning does) then computes exactly what the packed model computes. Without the flag, or on a
/// CPU without the route, dense projections stay f32.
#[test]
fn dense_projections_join_the_bf16_route_when_the_pass_allows_it() {
    let checkpoint = tiny_quantized_checkpoint();
    let packed = checkpoint.load_with(&Device::flex(), Precision::Auto).unwrap();
    let mut edited = checkpoint.load_with(&Device::flex(), Precision::Auto).unwrap();
    for id in edited.linear_ids() {
        let w = edited.weight(id).unwrap();
        edited.set_weight(id, w).unwrap();
    }
    assert_eq!(edited.packed_projections().0, 0, "every projection is dense now");
    let ids: Vec<Vec<u32>> = (0..3).map(|r| (0..120).map(|i| ((i * 5 + r * 11) % 255) as u32).collect()).collect();
    let batch = TokenBatch::pad(&ids, rosetta_model::Padding::Right, 0).unwrap();
    let layers = 0..packed.num_layers();
    let hidden = |model: &CausalLm, bf16: bool| {
        let interventions = Interventions::none().with_dense_in_bf16(bf16);
        let (h, _) = model.forward_layers(&batch, None, layers.clone(), &interventions).unwrap();
        h.into_data().try_to_vec::<f32>().unwrap()
    };
    let route = CpuRoute::for_rows(ids.len() * ids[0].len());
    let (edited_bf16, edited_f32, packed_bf16) = (hidden(&edited, true), hidden(&edited, false), hidden(&packed, true));
    if route == CpuRoute::Integer || route == CpuRoute::Dequantized {
        eprintln!("{}: no bf16 route on this CPU, so the flag changes nothing", route.name());
        assert_eq!(edited_bf16, edited_f32);
        return;
    }
    assert_eq!(edited_bf16, packed_bf16, "the same weight values on the same route");
    assert_ne!(edited_bf16, edited_f32, "without the flag the dense projections stay f32");
    let scale = edited_f32.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(max_abs_diff(&edited_bf16, &edited_f32) <= 0.05 * scale, "bf16 stays near f32");
}

/// `--quantize` takes f32 checkpoints and refuses quantized ones, naming the tensor and its type.
#[test]
fn quantizing_at_load_quantizes_and_refuses_quantized_input() {
    let checkpoint = tiny_quantized_checkpoint();
    let err = checkpoint.load_with(&Device::flex(), Precision::Quantize(QuantizeTo::Q8_0)).unwrap_err().to_string();
    assert!(err.contains("already quantized (Q8_0)") && err.contains("tensor `"), "{err}");

    // Rows that are not whole blocks are an error naming the tensor (the tiny fixture's
    // `down_proj` has rows of 48 values).
    let dir = temp_dir("quantized-hf");
    fixtures::write_tiny_hf(&dir.join("ragged"), 3);
    let ragged = Checkpoint::open(&dir.join("ragged"), None).unwrap();
    let err = ragged.load_with(&Device::flex(), Precision::Quantize(QuantizeTo::Q4_0)).unwrap_err().to_string();
    assert!(err.contains("down_proj.weight") && err.contains("multiple of 32"), "{err}");

    // A model whose rows are whole blocks quantizes every projection.
    let config = rosetta_model::ModelConfig { intermediate_size: 64, ..fixtures::tiny_config() };
    let source = rosetta_model::weights::random::RandomWeights::new(&config, 3, 0.2);
    let model = CausalLm::from_source(&config, &source, &Device::flex()).unwrap();
    let options = rosetta_model::export::ExportOptions { overwrite: true, ..Default::default() };
    rosetta_model::export::export_hf(&model, &fixtures::tiny_tokenizer(), &dir.join("model"), &options).unwrap();
    let f32_checkpoint = Checkpoint::open(&dir.join("model"), None).unwrap();
    let dense = f32_checkpoint.load_with(&Device::flex(), Precision::F32).unwrap();
    for to in [QuantizeTo::Q8_0, QuantizeTo::Q4_0, QuantizeTo::Q4_1] {
        let quantized = f32_checkpoint.load_with(&Device::flex(), Precision::Quantize(to)).unwrap();
        assert_eq!(quantized.packed_projections(), (14, 14), "{to:?}");
        assert!(quantized.packed_head.is_some(), "{to:?}: the head is packed");
        // The f32 model with the quantized weights (dequantised) is what the packed one computes.
        // The head's f32 twin holds the quantized values (so large batches use the same head).
        let mut rounded = dense.clone();
        rounded.lm_head = quantized.lm_head.clone();
        assert!(
            max_abs_diff(
                &rounded.lm_head.as_ref().unwrap().weight.val().into_data().try_to_vec::<f32>().unwrap(),
                &dense.lm_head.as_ref().unwrap().weight.val().into_data().try_to_vec::<f32>().unwrap()
            ) > 0.0
        );
        for id in dense.linear_ids() {
            let w = quantized.weight(id).unwrap();
            assert!(
                max_abs_diff(
                    &w.clone().into_data().try_to_vec::<f32>().unwrap(),
                    &dense.weight(id).unwrap().into_data().try_to_vec::<f32>().unwrap()
                ) > 0.0
            );
            rounded.set_weight(id, w).unwrap();
        }
        let ids = vec![vec![256u32, 116, 104, 101, 32, 97]];
        let (ours, reference) = (logits(&quantized, &ids), logits(&rounded, &ids));
        let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
        let delta = max_abs_diff(&ours, &reference);
        eprintln!("--quantize {to:?}: max |Δlogit| {delta:.2e} of {scale:.2} against its dequantised weights");
        assert!(delta <= 1e-3 * scale, "{to:?}: max |Δlogit| = {delta}, logits up to {scale}");
    }
}

/// SmolLM2 Q4_1 on its own blocks: bits per character within 0.005 of the f32 path in every
/// language of the embedded test split (8 sentences each here; the full split is in
/// reports/inference), and the same greedy continuations.
#[test]
fn smollm2_quantized_scores_and_generates_like_f32() {
    let Some(model_path) = default_model() else {
        return skip("default model missing (run scripts/fetch-model.sh)");
    };
    let checkpoint = Checkpoint::open(&model_path, None).unwrap();
    let packed = checkpoint.load_with(&Device::flex(), Precision::Auto).unwrap();
    let dense = checkpoint.load_with(&Device::flex(), Precision::F32).unwrap();
    assert_eq!(packed.packed_projections(), (210, 210));

    let (corpus, _) = ParallelCorpus::read(&CorpusDir::embedded().parallel_test(), BadLines::Fail).unwrap();
    let langs: Vec<String> = corpus.language_counts().keys().cloned().collect();
    assert!(langs.len() >= 5, "the embedded split has {langs:?}");
    // One sentence per forward: most run the integer tiles (under `BF16_ROWS` tokens). All eight
    // in one forward take the route of many rows: bf16 panels on CPUs with AVX-512 BF16,
    // dequantised f32 GEMM elsewhere.
    let one_at_a_time = ScoreOptions { batch_size: 1, ..ScoreOptions::for_model(&dense) };
    let all_at_once = ScoreOptions { batch_size: 8, ..ScoreOptions::for_model(&dense) };
    eprintln!("route of 8 sentences: {}", CpuRoute::for_rows(8 * 16).name());
    for lang in &langs {
        let texts: Vec<&str> = corpus.records.iter().filter_map(|r| r.texts.get(lang).map(String::as_str)).take(8).collect();
        assert_eq!(texts.len(), 8, "{lang}");
        let bits = |model: &CausalLm, options: &ScoreOptions| {
            let costs = score_texts_blocking(model, &checkpoint.tokenizer, &texts, options).unwrap();
            costs.into_iter().fold(rosetta_model::scoring::TextCost::default(), |a, b| a + b).bits_per_char()
        };
        let f = bits(&dense, &all_at_once);
        let (single, batched) = (bits(&packed, &one_at_a_time), bits(&packed, &all_at_once));
        eprintln!(
            "{lang}: bits/char f32 {f:.4}, quantized one at a time {single:.4} (Δ {:+.4}), batched {batched:.4} (Δ {:+.4})",
            single - f,
            batched - f
        );
        assert!((single - f).abs() <= 0.005, "{lang}: quantized {single} vs f32 {f}, one sentence per forward");
        assert!((batched - f).abs() <= 0.005, "{lang}: quantized {batched} vs f32 {f}, eight sentences per forward");
    }

    let config = GenerationConfig { max_new_tokens: 24, sampling: Sampling::Greedy, ..Default::default() };
    let prompts = ["The capital of France is", "Budapest a Duna két partján", "Mwalimu aliwaambia wanafunzi"];
    for prompt in prompts {
        let ids = vec![checkpoint.tokenizer.encode(prompt, false).unwrap()];
        let a = generate_blocking(&packed, &ids, &config, &Interventions::none(), |_, _| {}).unwrap();
        let b = generate_blocking(&dense, &ids, &config, &Interventions::none(), |_, _| {}).unwrap();
        assert_eq!(a.tokens, b.tokens, "greedy continuation of {prompt:?} differs");
    }

    // SmolLM2 ties its embedding to the packed head: scoring and generating gathered packed rows
    // and never built the f32 table (113 MB). Read, it is built from the blocks and equals the
    // f32 load's (Q4_1 dequantises exactly through the packed form).
    assert!(packed.packed_head.is_some() && packed.lm_head.is_none());
    assert!(!packed.embed_tokens.weight.is_initialized(), "the tied embedding table was built without being read");
    let table = |model: &CausalLm| model.embed_tokens.weight.val().slice([0..64, 0..576]).into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(table(&packed), table(&dense), "the table built from the packed head");
    assert!(packed.embed_tokens.weight.is_initialized());
}
