//! GGUF: dequantisation against the `gguf` package, and the real default model
//! (SmolLM2-135M-Instruct, Q4_1) against the same file loaded by transformers (`gguf_file=`).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and fixtures: a panic is how they report")]

use rosetta_model::burn::prelude::*;
use rosetta_model::generate::{GenerationConfig, Sampling, generate_blocking};
use rosetta_model::tokenizer::chat::{ChatMessage, render};
use rosetta_model::weights::Blob;
use rosetta_model::weights::gguf::GgufFile;
use rosetta_model::{Checkpoint, Interventions, Precision, TokenBatch};
use rosetta_tests::*;
use serde_json::json;

#[test]
fn dequantisation_matches_the_gguf_package() {
    let Some(python) = python() else {
        return skip("no Python reference venv (run scripts/setup-python.sh)");
    };
    let dir = temp_dir("quants");
    let (file, values) = (dir.join("quants.gguf"), dir.join("quants.json"));
    run_python(&python, "make_quant_gguf.py", &[file.to_str().unwrap(), values.to_str().unwrap()]);
    let reference = read_json(&values);
    let gguf = GgufFile::parse(Blob::open(&file).unwrap(), "quants.gguf").unwrap();
    assert_eq!(gguf.tensors.len(), reference.as_object().unwrap().len());
    let mut packed_types = Vec::new();
    for info in &gguf.tensors {
        let ours = gguf.read_f32(info).unwrap();
        let theirs = flatten_f32(&reference[&info.name]);
        let scale = theirs.iter().fold(1f32, |m, v| m.max(v.abs()));
        let delta = max_abs_diff(&ours, &theirs);
        assert!(delta <= 1e-6 * scale, "{}: max |Δ| = {delta:e}", info.name);
        eprintln!("{}: {} values, max |Δ| {delta:.1e}", info.name, ours.len());
        // The kernels' packed layout holds the same values.
        if let Some(packed) = gguf.read_packed(info).unwrap() {
            let delta = max_abs_diff(&packed.dequantize(), &theirs);
            assert!(delta <= 1e-6 * scale, "{} packed: max |Δ| = {delta:e}", info.name);
            packed_types.push(info.name.trim_start_matches("t.").to_string());
        }
    }
    assert_eq!(packed_types, ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q3_K", "Q4_K", "Q5_K", "Q6_K"], "types kept packed");
}

/// Parallel sentences in the languages of the project (no digits, where transformers' GGUF
/// tokenizer and llama.cpp's split differ).
const SENTENCES: [&str; 6] = [
    "In the beginning God created the heaven and the earth.",
    "Kezdetben teremtette Isten az eget és a földet.",
    "Hapo mwanzo Mungu aliziumba mbingu na nchi.",
    "ในเริ่มแรกนั้นพระเจ้าทรงเนรมิตสร้างฟ้าและแผ่นดินโลก",
    "起初，神创造天地。",
    "Am Anfang schuf Gott Himmel und Erde.",
];

#[test]
fn smollm2_gguf_matches_transformers() {
    let Some(model_path) = default_model() else {
        return skip("default model missing (run scripts/fetch-model.sh)");
    };
    let Some(python) = python() else {
        return skip("no Python reference venv (run scripts/setup-python.sh)");
    };
    let checkpoint = Checkpoint::open(&model_path, None).unwrap();
    // The f32 path is the one that must match transformers logit for logit; the quantized path
    // is held to it in `model_quantized`.
    let model = checkpoint.load_with(&Device::flex(), Precision::F32).unwrap();
    let tokenizer = &checkpoint.tokenizer;
    let inputs: Vec<Vec<u32>> = SENTENCES.iter().map(|s| tokenizer.encode(s, false).unwrap()).collect();
    let chat = vec![ChatMessage::user("What is the capital of Hungary?")];

    let dir = temp_dir("smollm2");
    let (request, answer) = (dir.join("in.json"), dir.join("out"));
    write_json(&request, &json!({"inputs": inputs, "texts": SENTENCES, "greedy": 20, "chat": chat, "float64": true}));
    run_python(&python, "hf_logits.py", &[model_path.to_str().unwrap(), request.to_str().unwrap(), answer.to_str().unwrap()]);
    let theirs = read_json(&answer.join("result.json"));

    // Two float32 implementations of a 30-layer model differ by accumulation order alone, so
    // each is also measured against transformers in float64: Rosetta must be as close to the
    // exact result as transformers' own float32 run is.
    let (mut worst, mut ours_vs_exact, mut hf_vs_exact) = (0f32, 0f64, 0f64);
    for (i, ids) in inputs.iter().enumerate() {
        assert_eq!(ids, &rosetta_tests::ids(&theirs["tokens"][i]), "tokenization differs on {:?}", SENTENCES[i]);
        let ours: Vec<f32> = model.forward(&TokenBatch::single(ids).unwrap()).into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let hf32 = read_f32_file(&answer.join(format!("logits_{i}.f32")));
        let hf64 = read_f64_file(&answer.join(format!("logits_{i}.f64")));
        let delta = max_abs_diff(&ours, &hf32);
        let (ours_err, hf_err) = (max_abs_diff_f64(&ours, &hf64), max_abs_diff_f64(&hf32, &hf64));
        eprintln!(
            "{:?}…: {} tokens, |Δ| vs transformers f32 {delta:.2e}; vs float64: Rosetta {ours_err:.2e}, transformers {hf_err:.2e}",
            &SENTENCES[i].chars().take(12).collect::<String>(),
            ids.len()
        );
        worst = worst.max(delta);
        ours_vs_exact = ours_vs_exact.max(ours_err);
        hf_vs_exact = hf_vs_exact.max(hf_err);
    }
    eprintln!(
        "SmolLM2-135M GGUF: max |Δlogit| vs transformers {worst:.3e}; vs float64 Rosetta {ours_vs_exact:.3e}, transformers {hf_vs_exact:.3e}"
    );
    // Two float32 runs cannot agree more closely than the less exact one is to float64:
    // transformers' own float32 error moves between runs on this CPU (1e-4 … 2e-3 on the
    // Hungarian sentence), so the bound on their difference allows for it.
    assert!(worst <= 2e-3f32.max((hf_vs_exact + ours_vs_exact) as f32 * 1.1), "max |Δlogit| vs transformers = {worst:e}");
    assert!(
        ours_vs_exact <= 1.5 * hf_vs_exact + 1e-4,
        "Rosetta is further from float64 ({ours_vs_exact:e}) than transformers ({hf_vs_exact:e})"
    );

    let config = GenerationConfig { max_new_tokens: 20, sampling: Sampling::Greedy, ..Default::default() };
    let out = generate_blocking(&model, &inputs[..1], &config, &Interventions::none(), |_, _| {}).unwrap();
    assert_eq!(out.tokens[0], rosetta_tests::ids(&theirs["greedy"][0]), "greedy continuation differs");

    let template = tokenizer.chat_template.as_deref().expect("SmolLM2 ships a chat template");
    let rendered = render(template, &chat, true, tokenizer.bos_token.as_deref(), tokenizer.eos_token.as_deref()).unwrap();
    assert_eq!(rendered, theirs["chat"].as_str().unwrap(), "chat template renders differently");
}

#[test]
fn smollm2_knows_the_capital_of_hungary() {
    let Some(model_path) = default_model() else {
        return skip("default model missing (run scripts/fetch-model.sh)");
    };
    let checkpoint = Checkpoint::open(&model_path, None).unwrap();
    let model = checkpoint.load(&Device::flex()).unwrap();
    let tokenizer = &checkpoint.tokenizer;
    let prompt = render(
        tokenizer.chat_template.as_deref().unwrap(),
        &[ChatMessage::user("What is the capital of Hungary? Answer in one sentence.")],
        true,
        None,
        None,
    )
    .unwrap();
    let ids = tokenizer.encode(&prompt, false).unwrap();
    let config = GenerationConfig { max_new_tokens: 24, stop_tokens: checkpoint.config.eos_token_ids.clone(), ..Default::default() };
    let out = generate_blocking(&model, &[ids], &config, &Interventions::none(), |_, _| {}).unwrap();
    let answer = tokenizer.decode(&out.tokens[0], true).unwrap();
    assert!(answer.contains("Budapest"), "answer: {answer:?}");
}
