//! Parity with HF transformers on tiny random checkpoints that transformers itself creates:
//! llama (GQA + tied, bias + llama3 rope, MQA + linear rope), mistral (sliding window),
//! qwen2 (q/k/v bias). Logits within 1e-4 in f32, the same 20-token greedy continuation, the
//! same last-position logits for a left-padded batch, the same hidden states at every residual
//! site — and the same again after exporting and reloading in transformers.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and fixtures: a panic is how they report")]

use rosetta_model::burn::prelude::*;
use rosetta_model::export::{ExportOptions, export_hf};
use rosetta_model::generate::{GenerationConfig, Sampling, generate_blocking};
use rosetta_model::intervention::{Interventions, Pooling};
use rosetta_model::{Checkpoint, Padding, TokenBatch};
use rosetta_tests::*;
use serde_json::json;

const VARIANTS: [&str; 5] = ["llama_gqa_tied", "llama_bias_llama3_rope", "llama_linear_rope_mqa", "mistral_sliding", "qwen2_bias_gqa"];
const LOGIT_TOLERANCE: f32 = 1e-4;

fn logits_of(model: &rosetta_model::CausalLm, ids: &[u32]) -> Vec<f32> {
    model.forward(&TokenBatch::single(ids).unwrap()).into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

#[test]
fn tiny_checkpoints_match_transformers() {
    let Some(python) = python() else {
        return skip("no Python reference venv (run scripts/setup-python.sh)");
    };
    let root = tiny_models(&python);
    let device = Device::flex();
    for name in VARIANTS {
        let dir = root.join(name);
        let reference = read_json(&dir.join("reference.json"));
        let checkpoint = Checkpoint::open(&dir, None).unwrap();
        let model = checkpoint.load(&device).unwrap();

        let mut worst = 0f32;
        for (i, input) in reference["inputs"].as_array().unwrap().iter().enumerate() {
            let ours = logits_of(&model, &ids(input));
            let theirs = flatten_f32(&reference["logits"][i]);
            worst = worst.max(max_abs_diff(&ours, &theirs));
        }
        assert!(worst <= LOGIT_TOLERANCE, "{name}: max |Δlogit| = {worst:e}");

        // Left-padded batch: the last position of each row.
        let sequences: Vec<Vec<u32>> = reference["padded"]["sequences"].as_array().unwrap().iter().map(ids).collect();
        let batch = TokenBatch::pad(&sequences, Padding::Left, 0).unwrap();
        let logits = model.forward(&batch);
        let [b, s, v] = logits.dims();
        let last: Vec<f32> = logits.slice([0..b, s - 1..s, 0..v]).into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let padded_delta = max_abs_diff(&last, &flatten_f32(&reference["padded"]["last_logits"]));
        assert!(padded_delta <= LOGIT_TOLERANCE, "{name}: padded batch max |Δlogit| = {padded_delta:e}");

        // Hidden states at every residual site but the last (HF applies the final norm there).
        let first = ids(&reference["inputs"][0]);
        let layers = model.num_layers();
        let mut interventions = Interventions::none();
        for site in 0..layers {
            interventions = interventions.capture(site, Pooling::PerToken);
        }
        let (_, trace) = model.forward_hidden(&TokenBatch::single(&first).unwrap(), &interventions).unwrap();
        let mut hidden_delta = 0f32;
        for site in 0..layers {
            let ours: Vec<f32> =
                trace.residual[&site].per_token().unwrap().clone().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
            hidden_delta = hidden_delta.max(max_abs_diff(&ours, &flatten_f32(&reference["hidden_states"][site])));
        }
        assert!(hidden_delta <= LOGIT_TOLERANCE, "{name}: hidden states max |Δ| = {hidden_delta:e}");

        let config = GenerationConfig { max_new_tokens: 20, sampling: Sampling::Greedy, ..Default::default() };
        let out = generate_blocking(&model, &[first], &config, &Interventions::none(), |_, _| {}).unwrap();
        assert_eq!(out.tokens[0], ids(&reference["greedy"]), "{name}: greedy continuation differs");
        eprintln!("{name}: max |Δlogit| {worst:.2e}, padded {padded_delta:.2e}, hidden {hidden_delta:.2e}, greedy 20/20 equal");
    }
}

#[test]
fn export_round_trips_through_transformers() {
    let Some(python) = python() else {
        return skip("no Python reference venv (run scripts/setup-python.sh)");
    };
    let root = tiny_models(&python);
    let work = temp_dir("roundtrip");
    let device = Device::flex();
    for name in ["llama_gqa_tied", "llama_bias_llama3_rope", "mistral_sliding", "qwen2_bias_gqa"] {
        let checkpoint = Checkpoint::open(&root.join(name), None).unwrap();
        let model = checkpoint.load(&device).unwrap();
        let exported = work.join(name);
        export_hf(&model, &checkpoint.tokenizer, &exported, &ExportOptions::default()).unwrap();

        let text = "A gyors barna róka átugrik a lusta kutyán.";
        let ours_ids = checkpoint.tokenizer.encode(text, false).unwrap();
        let request = work.join(format!("{name}-in.json"));
        let answer = work.join(format!("{name}-out"));
        write_json(&request, &json!({"inputs": [ours_ids], "texts": [text]}));
        run_python(&python, "hf_logits.py", &[exported.to_str().unwrap(), request.to_str().unwrap(), answer.to_str().unwrap()]);
        let theirs = read_json(&answer.join("result.json"));
        assert_eq!(ids(&theirs["tokens"][0]), ours_ids, "{name}: exported tokenizer encodes differently in transformers");
        let delta = max_abs_diff(&logits_of(&model, &ours_ids), &read_f32_file(&answer.join("logits_0.f32")));
        assert!(delta <= LOGIT_TOLERANCE, "{name}: exported model max |Δlogit| = {delta:e}");

        // And Rosetta reads its own export back identically.
        let again = Checkpoint::open(&exported, None).unwrap().load(&device).unwrap();
        assert_eq!(logits_of(&again, &ours_ids), logits_of(&model, &ours_ids), "{name}: reload differs");
        eprintln!("{name}: export → transformers max |Δlogit| {delta:.2e}");
    }
}
