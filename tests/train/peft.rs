//! PEFT adapters both ways, against transformers + peft: an adapter Rosetta trained loads in
//! `PeftModel.from_pretrained` with the logits of Rosetta's merged model; an adapter peft made
//! loads here with peft's logits, and a LoRA run can start from it. Bad adapters are refused with
//! the reason.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and fixtures: a panic is how they report")]

use std::path::Path;

use rosetta_model::burn::module::Module;
use rosetta_model::burn::prelude::*;
use rosetta_model::peft::PeftAdapter;
use rosetta_model::{CausalLm, Checkpoint, LinearId, LinearKind, TokenBatch};
use rosetta_tests::fixtures::{tiny_train_config, write_tiny_hf};
use rosetta_tests::{max_abs_diff, python, read_f32_file, read_json, run_python, skip, temp_dir, write_json};
use rosetta_train::config::LoraSection;
use rosetta_train::{Quiet, RunOptions, train};
use serde_json::json;

/// transformers' f32 forward and ours agree to this on the tiny models (tests/model/parity.rs).
const LOGIT_TOLERANCE: f32 = 1e-4;

fn logits_of(model: &CausalLm, ids: &[u32]) -> Vec<f32> {
    model.forward(&TokenBatch::single(ids).unwrap()).into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn ids(model_dir: &Path) -> Vec<u32> {
    let checkpoint = Checkpoint::open(model_dir, None).unwrap();
    checkpoint.tokenizer.encode("Egy magyar mondat, and an English one.", false).unwrap()
}

/// transformers' logits of `ids` under `model_dir`, with the request's adapter settings.
fn reference_logits(python: &Path, model_dir: &Path, ids: &[u32], extra: serde_json::Value, work: &Path) -> Vec<f32> {
    let request = work.join("request.json");
    let answer = work.join("answer");
    let mut body = json!({"inputs": [ids]});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    write_json(&request, &body);
    run_python(python, "hf_logits.py", &[model_dir.to_str().unwrap(), request.to_str().unwrap(), answer.to_str().unwrap()]);
    read_f32_file(&answer.join("logits_0.f32"))
}

fn lora(rank: usize, alpha: f64, targets: &[&str]) -> LoraSection {
    LoraSection {
        rank,
        alpha,
        targets: targets.iter().map(|t| t.to_string()).collect(),
        init: None,
        base: rosetta_train::config::LoraBase::Auto,
    }
}

#[test]
fn a_trained_adapter_loads_in_peft_with_the_merged_models_logits() {
    let Some(python) = python() else {
        return skip("no Python reference venv (scripts/setup-python.sh) with transformers + peft");
    };
    let dir = temp_dir("peft-out");
    let base = dir.join("model");
    write_tiny_hf(&base, 21);
    let mut config = tiny_train_config(&base, &dir.join("run"));
    config.lora = Some(lora(4, 8.0, &["q_proj", "v_proj", "down_proj"]));
    config.optim.lr = 1e-2;
    let summary = train(&config, &RunOptions::default(), &mut Quiet).unwrap();
    let adapter_dir = summary.final_adapter.expect("a LoRA run writes its adapter");
    let merged = Checkpoint::open(&summary.final_model.unwrap(), None).unwrap().load(&Device::flex()).unwrap();

    let adapter = PeftAdapter::read(&adapter_dir).unwrap();
    assert_eq!(
        (adapter.rank, adapter.alpha, adapter.targets()),
        (4, 8.0, vec![LinearKind::QProj, LinearKind::VProj, LinearKind::DownProj])
    );
    assert_eq!(adapter.factors.len(), 3 * merged.layers.len());
    let b = &adapter.factors[&LinearId::new(0, LinearKind::QProj)].b;
    assert!(b.data.iter().any(|v| *v != 0.0), "training left B at zero: the test would compare nothing");
    let config_json = read_json(&adapter_dir.join("adapter_config.json"));
    assert_eq!(config_json["base_model_name_or_path"], json!(base.display().to_string()));

    let ids = ids(&base);
    let ours = logits_of(&merged, &ids);
    let theirs = reference_logits(&python, &base, &ids, json!({"adapter": adapter_dir}), &dir);
    let delta = max_abs_diff(&ours, &theirs);
    assert!(delta <= LOGIT_TOLERANCE, "PeftModel(base, exported adapter) vs Rosetta's merged model: max |Δlogit| = {delta:e}");
    let base_model = Checkpoint::open(&base, None).unwrap().load(&Device::flex()).unwrap();
    assert!(max_abs_diff(&logits_of(&base_model, &ids), &theirs) > 1e-3, "the adapter changes nothing: a vacuous comparison");

    // `rosetta export --peft-from` reads the same adapter back out of the run's checkpoint.
    let (_, _, from_run, step) = rosetta_train::trainer::load_run_model(&config.run.out, &Device::flex()).unwrap();
    assert_eq!(step, 12);
    let again = PeftAdapter::from_model(&from_run, 4, 8.0, None).unwrap().unwrap();
    for (id, f) in &adapter.factors {
        assert_eq!((&again.factors[id].a.data, &again.factors[id].b.data), (&f.a.data, &f.b.data), "{id}");
    }
    eprintln!("trained adapter: PeftModel vs merged max |Δlogit| {delta:.2e}");
}

#[test]
fn an_adapter_made_by_peft_loads_here_and_trains_on() {
    let Some(python) = python() else {
        return skip("no Python reference venv (scripts/setup-python.sh) with transformers + peft");
    };
    let dir = temp_dir("peft-in");
    let base = dir.join("model");
    write_tiny_hf(&base, 22);
    let adapter_dir = dir.join("peft-adapter");
    let targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
    let ids = ids(&base);
    let spec = json!({"make_adapter": {"dir": adapter_dir, "r": 4, "alpha": 16, "targets": targets, "seed": 3}});
    let theirs = reference_logits(&python, &base, &ids, spec, &dir);

    let checkpoint = Checkpoint::open(&base, None).unwrap();
    let base_model = checkpoint.load(&Device::flex()).unwrap();
    let adapter = PeftAdapter::read(&adapter_dir).unwrap();
    assert_eq!((adapter.rank, adapter.scale()), (4, 4.0));
    let merged = adapter.attach(base_model.clone()).unwrap().materialize();
    let delta = max_abs_diff(&logits_of(&merged, &ids), &theirs);
    assert!(delta <= LOGIT_TOLERANCE, "peft's adapter applied here vs in transformers: max |Δlogit| = {delta:e}");
    assert!(max_abs_diff(&logits_of(&base_model, &ids), &theirs) > 1e-3, "the adapter changes nothing: a vacuous comparison");
    eprintln!("peft-made adapter: Rosetta vs PeftModel max |Δlogit| {delta:.2e}");

    // A LoRA run can start from it: at a vanishing learning rate (Adam moves each factor by about
    // lr per step) the run's adapter is the one it started from.
    let mut config = tiny_train_config(&base, &dir.join("run"));
    config.run.steps = 2;
    config.run.checkpoint_every = 2;
    config.run.eval_every = 2;
    config.optim.lr = 1e-12;
    config.optim.min_lr = 0.0;
    config.optim.weight_decay = 0.0;
    config.lora = Some(LoraSection { init: Some(adapter_dir.clone()), ..lora(4, 16.0, &targets) });
    let summary = train(&config, &RunOptions::default(), &mut Quiet).unwrap();
    let trained = PeftAdapter::read(&summary.final_adapter.unwrap()).unwrap();
    for (id, f) in &adapter.factors {
        assert!(f.b.data.iter().any(|v| v.abs() > 1e-3), "{id}: peft's B is zero, the comparison would be vacuous");
        let moved = max_abs_diff(&trained.factors[id].a.data, &f.a.data).max(max_abs_diff(&trained.factors[id].b.data, &f.b.data));
        assert!(moved < 1e-9, "{id} is not the adapter the run started from (moved {moved:e})");
    }

    // [lora] must describe the adapter it starts from.
    config.run.out = dir.join("run-mismatch");
    config.lora = Some(LoraSection { init: Some(adapter_dir.clone()), ..lora(8, 16.0, &targets) });
    let err = train(&config, &RunOptions::default(), &mut Quiet).err().unwrap().to_string();
    assert!(err.contains("lora.init") && err.contains("r = 4") && err.contains("rank = 8"), "{err}");
}

#[test]
fn bad_adapters_are_refused_with_the_reason() {
    let dir = temp_dir("peft-bad");
    let base = dir.join("model");
    write_tiny_hf(&base, 23);
    let model = Checkpoint::open(&base, None).unwrap().load(&Device::flex()).unwrap();
    let [d_in, _] = model.linear(LinearId::new(0, LinearKind::QProj)).unwrap().weight.val().dims();

    // An adapter for another base: its factors do not fit this model's projections.
    let other = rosetta_model::peft::Factors {
        a: rosetta_model::weights::HostTensor::new(vec![2, d_in + 3], vec![0.1; 2 * (d_in + 3)]),
        b: rosetta_model::weights::HostTensor::new(vec![d_in, 2], vec![0.1; 2 * d_in]),
    };
    let foreign = PeftAdapter {
        rank: 2,
        alpha: 4.0,
        rslora: false,
        base_model: Some("org/another-model".into()),
        factors: [(LinearId::new(0, LinearKind::QProj), other)].into_iter().collect(),
    };
    let written = foreign.write(&dir.join("foreign"), false).unwrap();
    let err = PeftAdapter::read(&written).unwrap().attach(model.clone()).err().unwrap().to_string();
    assert!(err.contains("org/another-model") && err.contains("q_proj.lora_A.weight") && err.contains(&format!("{}", d_in + 3)), "{err}");

    // Targets Rosetta does not adapt.
    let config_path = written.join("adapter_config.json");
    let mut config = read_json(&config_path);
    config["target_modules"] = json!(["q_proj", "lm_head"]);
    write_json(&config_path, &config);
    let err = PeftAdapter::read(&written).err().unwrap().to_string();
    assert!(err.contains("adapter_config.json") && err.contains("`lm_head` is not supported"), "{err}");

    // Not an adapter directory at all.
    let err = PeftAdapter::read(&base).err().unwrap().to_string();
    assert!(err.contains("adapter_config.json") && err.contains("--adapter takes a PEFT adapter directory"), "{err}");
}

/// The default model is a quantized GGUF: a LoRA run on such a base trains on dequantised
/// weights, and its adapter exports from the checkpoint the same way.
#[test]
fn a_lora_run_on_a_quantized_gguf_exports_its_adapter() {
    let dir = temp_dir("peft-gguf");
    let base = dir.join("tiny-q8_0.gguf");
    std::fs::write(&base, rosetta_tests::fixtures::tiny_gguf_q8_0()).unwrap();
    let mut config = tiny_train_config(&base, &dir.join("run"));
    config.run.steps = 4;
    config.run.checkpoint_every = 4;
    config.run.eval_every = 4;
    config.optim.lr = 1e-2;
    config.lora = Some(lora(2, 4.0, &["q_proj", "up_proj"]));
    let summary = train(&config, &RunOptions::default(), &mut Quiet).unwrap();
    let written = PeftAdapter::read(&summary.final_adapter.unwrap()).unwrap();
    let (_, _, from_run, _) = rosetta_train::trainer::load_run_model(&config.run.out, &Device::flex()).unwrap();
    let again = PeftAdapter::from_model(&from_run, 2, 4.0, None).unwrap().expect("the checkpoint's adapters");
    assert_eq!(again.factors.len(), written.factors.len());
    for (id, f) in &written.factors {
        assert!(f.b.data.iter().any(|v| *v != 0.0), "{id}: B never trained");
        assert_eq!(again.factors[id].b.data, f.b.data, "{id}");
    }
}
