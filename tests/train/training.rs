//! The trainer end to end on a tiny model and real corpus text: it learns, it resumes exactly,
//! LoRA and freezing train what they say, data parallelism adds up, bad input is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and fixtures: a panic is how they report")]

use std::path::{Path, PathBuf};

use rosetta_model::Checkpoint;
use rosetta_model::burn::prelude::*;
use rosetta_tests::fixtures::{tiny_train_config, write_tiny_hf};
use rosetta_tests::temp_dir;
use rosetta_train::config::{FreezeSection, LoraSection, Trainable};
use rosetta_train::metrics::read_metrics;
use rosetta_train::{Quiet, RunOptions, TrainConfig, train};

fn corpus() -> PathBuf {
    rosetta_tests::repo_root().join("data/corpus")
}

/// A tiny model, and a run config over the embedded corpus.
fn setup(name: &str) -> (PathBuf, TrainConfig) {
    let dir = temp_dir(name);
    let model = dir.join("model");
    write_tiny_hf(&model, 11);
    let config = tiny_train_config(&model, &dir.join("run"));
    (dir, config)
}

fn losses(out: &Path) -> Vec<(u64, f64)> {
    read_metrics(&out.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter_map(|m| Some((m.get("step")?.as_u64()?, m.get("loss")?.as_f64()?)))
        .collect()
}

#[test]
fn learns_and_resumes_bit_for_bit() {
    let (_, config) = setup("resume-a");
    let summary = train(&config, &RunOptions::default(), &mut Quiet).unwrap();
    let uninterrupted = losses(&config.run.out);
    assert_eq!(uninterrupted.len(), 12);
    let first: f64 = uninterrupted[..3].iter().map(|l| l.1).sum::<f64>() / 3.0;
    let last: f64 = uninterrupted[9..].iter().map(|l| l.1).sum::<f64>() / 3.0;
    assert!(last < first, "loss did not fall: {first} → {last}");
    let (before, after) = (summary.first_eval.unwrap(), summary.last_eval.unwrap());
    assert!(after["hu"].bits_per_char() < before["hu"].bits_per_char(), "held-out hu did not improve");
    // keep_last = 2 of the checkpoints at 4, 8, 12.
    let kept: Vec<String> =
        std::fs::read_dir(config.run.out.join("checkpoints")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(
        {
            let mut k = kept.clone();
            k.sort();
            k
        },
        vec!["step-000008", "step-000012"]
    );
    // The exported model loads and differs from the base.
    let exported = Checkpoint::open(&summary.final_model.unwrap(), None).unwrap();
    assert!(exported.extras.unwrap()["mix"].as_str().unwrap().contains("hu:0.75"));

    // Interrupted after step 6 (checkpoint at 4; steps 5 and 6 logged but not checkpointed),
    // then resumed: the same losses, bit for bit.
    let (_, mut interrupted) = setup("resume-b");
    train(&interrupted, &RunOptions { stop_after: Some(6), ..Default::default() }, &mut Quiet).unwrap();
    assert_eq!(losses(&interrupted.run.out).len(), 6);
    let err = train(&interrupted, &RunOptions::default(), &mut Quiet).unwrap_err().to_string();
    assert!(err.contains("--resume") && err.contains("nothing was overwritten"), "{err}");
    train(&interrupted, &RunOptions { resume: true, ..Default::default() }, &mut Quiet).unwrap();
    let resumed = losses(&interrupted.run.out);
    assert_eq!(resumed, uninterrupted, "resumed run differs from the uninterrupted one");

    // A resumed run must be the same run.
    interrupted.optim.lr = 1e-3;
    let err = train(&interrupted, &RunOptions { resume: true, ..Default::default() }, &mut Quiet).unwrap_err().to_string();
    assert!(err.contains("different settings") && err.contains("optim"), "{err}");
}

/// TensorBoard's own reader finds every number of `metrics.jsonl` at its step, once — also after
/// a resume, which rewrites the event file from the lines it keeps.
#[test]
fn tensorboard_reads_the_metrics_of_a_resumed_run() {
    let Some(python) = rosetta_tests::python() else {
        return rosetta_tests::skip("no Python reference venv (scripts/setup-python.sh) for the tensorboard package");
    };
    let (dir, config) = setup("tensorboard");
    train(&config, &RunOptions { stop_after: Some(6), ..Default::default() }, &mut Quiet).unwrap();
    train(&config, &RunOptions { resume: true, ..Default::default() }, &mut Quiet).unwrap();
    let out = dir.join("scalars.json");
    rosetta_tests::run_python(&python, "tensorboard_scalars.py", &[config.run.out.to_str().unwrap(), out.to_str().unwrap()]);
    let read = rosetta_tests::read_json(&out);
    let read = read.as_object().unwrap();

    let mut expected: std::collections::BTreeMap<String, Vec<(u64, f32)>> = Default::default();
    for record in read_metrics(&config.run.out.join("metrics.jsonl")).unwrap() {
        let step = record["step"].as_u64().unwrap();
        for (tag, value) in rosetta_train::tensorboard::scalars_of(&record) {
            // TensorBoard keeps scalars as f32: equal as f32, bit for bit.
            expected.entry(tag).or_default().push((step, value as f32));
        }
    }
    assert!(expected["loss"].len() == 12 && expected.contains_key("eval/hu/bits_per_char"), "{:?}", expected.keys());
    assert_eq!(read.len(), expected.len(), "tags: {:?} vs {:?}", read.keys(), expected.keys());
    for (tag, want) in &expected {
        let got: Vec<(u64, f32)> =
            read[tag].as_array().unwrap().iter().map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap() as f32)).collect();
        assert_eq!(&got, want, "tag {tag}");
    }
}

#[test]
fn corrupt_checkpoint_names_the_file_and_the_fallback() {
    let (_, config) = setup("corrupt");
    train(&config, &RunOptions { stop_after: Some(8), ..Default::default() }, &mut Quiet).unwrap();
    let bad = config.run.out.join("checkpoints/step-000008/model.bpk");
    let bytes = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 3]).unwrap();
    let err = train(&config, &RunOptions { resume: true, ..Default::default() }, &mut Quiet).unwrap_err().to_string();
    assert!(err.contains("step-000008/model.bpk") && err.contains("step-000004"), "{err}");
    // Removing it, as the message says, resumes from the older checkpoint.
    std::fs::remove_dir_all(config.run.out.join("checkpoints/step-000008")).unwrap();
    let summary = train(&config, &RunOptions { resume: true, ..Default::default() }, &mut Quiet).unwrap();
    assert_eq!(summary.last_step, 12);
}

#[test]
fn lora_trains_only_adapters_and_merges_on_export() {
    let (dir, mut config) = setup("lora");
    config.lora = Some(LoraSection {
        rank: 4,
        alpha: 8.0,
        targets: vec!["q_proj".into(), "v_proj".into(), "down_proj".into()],
        init: None,
        base: rosetta_train::config::LoraBase::Auto,
    });
    config.optim.lr = 1e-2;
    let summary = train(&config, &RunOptions::default(), &mut Quiet).unwrap();
    let device = Device::flex();
    let base = Checkpoint::open(&dir.join("model"), None).unwrap().load(&device).unwrap();
    let tuned = Checkpoint::open(&summary.final_model.unwrap(), None).unwrap().load(&device).unwrap();
    let changed = |id: rosetta_model::LinearId| {
        let (a, b) = (base.weight(id).unwrap(), tuned.weight(id).unwrap());
        (a - b).abs().max().into_scalar::<f32>() > 0.0
    };
    use rosetta_model::{LinearId, LinearKind::*};
    assert!(changed(LinearId::new(0, QProj)) && changed(LinearId::new(1, DownProj)), "adapted weights unchanged");
    assert!(!changed(LinearId::new(0, KProj)) && !changed(LinearId::new(1, GateProj)), "non-target weights changed");
    let embed_delta = (base.embed_tokens.weight.val() - tuned.embed_tokens.weight.val()).abs().max().into_scalar::<f32>();
    assert_eq!(embed_delta, 0.0, "LoRA changed the embedding");
}

/// LoRA over a quantized checkpoint trains over its packed blocks (QLoRA) and computes what
/// LoRA over their dequantised values computes: the same losses step for step, the same merged
/// export and PEFT adapter — with no f32 copy of the packed projections in its checkpoints. The
/// tiny GGUF stores every projection but `down_proj` as Q8_0, so the run mixes adapters beside
/// packed blocks and on dense weights.
#[test]
fn qlora_trains_over_packed_blocks_as_lora_over_their_values() {
    use rosetta_model::peft::PeftAdapter;
    use rosetta_model::{LinearId, LinearKind};
    use rosetta_train::config::LoraBase;
    let dir = temp_dir("qlora");
    let model = dir.join("tiny-q8_0.gguf");
    std::fs::write(&model, rosetta_tests::fixtures::tiny_gguf_q8_0()).unwrap();
    let run = |name: &str, base: LoraBase| {
        let mut config = tiny_train_config(&model, &dir.join(name));
        config.lora = Some(LoraSection { rank: 4, alpha: 8.0, targets: LoraSection::all_targets(), init: None, base });
        config.optim.lr = 1e-2;
        let summary = train(&config, &RunOptions::default(), &mut Quiet).unwrap();
        (config, summary)
    };
    let (packed_config, packed) = run("packed", LoraBase::Auto);
    let (f32_config, dense) = run("f32", LoraBase::F32);
    let cpu = [Device::flex().autodiff()];
    assert_eq!(rosetta_train::adapt::load_precision(&packed_config, &cpu), rosetta_model::Precision::PackedBase);
    assert_eq!(rosetta_train::adapt::load_precision(&f32_config, &cpu), rosetta_model::Precision::F32);

    let (packed_losses, f32_losses) = (losses(&packed_config.run.out), losses(&f32_config.run.out));
    assert_eq!(packed_losses.len(), 12, "the QLoRA run logged {} steps", packed_losses.len());
    assert!(packed_losses[11].1 < packed_losses[0].1, "QLoRA did not learn: {packed_losses:?}");
    for ((step, a), (_, b)) in packed_losses.iter().zip(&f32_losses) {
        assert!((a - b).abs() <= 1e-4 * b.abs(), "step {step}: QLoRA loss {a}, LoRA over f32 {b}");
    }
    let record = |config: &TrainConfig| std::fs::metadata(config.run.out.join("checkpoints/step-000012/model.bpk")).unwrap().len();
    assert!(
        record(&packed_config) < record(&f32_config),
        "the QLoRA checkpoint ({} bytes) holds f32 copies of its packed base (LoRA over f32: {} bytes)",
        record(&packed_config),
        record(&f32_config)
    );

    // Exported merged: every adapted projection moved, and as the f32 run's did.
    let device = Device::flex();
    let load = |path: &Path| Checkpoint::open(path, None).unwrap().load_with(&device, rosetta_model::Precision::F32).unwrap();
    let (base, from_packed, from_f32) = (load(&model), load(&packed.final_model.unwrap()), load(&dense.final_model.unwrap()));
    for id in [LinearId::new(0, LinearKind::QProj), LinearId::new(1, LinearKind::UpProj), LinearId::new(1, LinearKind::DownProj)] {
        let (b, p, f) = (values(base.weight(id).unwrap()), values(from_packed.weight(id).unwrap()), values(from_f32.weight(id).unwrap()));
        let moved = p.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(moved > 0.0, "{id}: the merged export did not change");
        let apart = p.iter().zip(&f).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(apart <= 1e-4 * moved.max(1e-3), "{id}: QLoRA's merged weight differs from LoRA's by {apart} (moved {moved})");
    }
    // The PEFT adapters agree, and the run's checkpoint loads back into its packed structure.
    let (a, b) = (PeftAdapter::read(&packed.final_adapter.unwrap()).unwrap(), PeftAdapter::read(&dense.final_adapter.unwrap()).unwrap());
    assert_eq!(a.factors.keys().collect::<Vec<_>>(), b.factors.keys().collect::<Vec<_>>());
    for (id, fa) in &a.factors {
        let fb = &b.factors[id];
        let worst = fa.b.data.iter().zip(&fb.b.data).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(worst <= 1e-3 * fb.b.data.iter().fold(1e-3f32, |m, v| m.max(v.abs())), "{id}: B factors differ by {worst}");
    }
    let (_, _, reloaded, step) = rosetta_train::trainer::load_run_model(&packed_config.run.out, &device).unwrap();
    assert_eq!(step, 12);
    assert!(reloaded.adapter(LinearId::new(0, LinearKind::QProj)).unwrap().is_some(), "the packed projection's adapter did not reload");
}

/// Every float parameter's gradient in `grads`, by parameter id.
fn gradients_by_param(model: &rosetta_model::CausalLm, grads: &rosetta_model::burn::tensor::Gradients) -> Vec<(String, Vec<f32>)> {
    use rosetta_model::burn::module::{Module, ModuleVisitor, Param};
    struct Collect<'a>(&'a rosetta_model::burn::tensor::Gradients, Vec<(String, Vec<f32>)>);
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = param.val().grad(self.0) {
                self.1.push((format!("{}", param.id), g.into_data().try_into_vec::<f32>().unwrap()));
            }
        }
    }
    let mut collect = Collect(grads, Vec::new());
    model.visit(&mut collect);
    collect.1
}

/// Activation checkpointing by layer changes memory, not the math. One step's gradients, with
/// and without it, agree within 1e-5 of each parameter's largest for full fine-tuning, LoRA and
/// QLoRA (packed documents, so the mask crosses the replay too), and every layer ran checkpointed. Whole runs log the same losses
/// (within 1e-5): full, LoRA, and QLoRA over the tiny Q8_0 GGUF.
#[test]
fn checkpointed_layers_train_as_the_plain_step() {
    use rosetta_data::PackedRow;
    use rosetta_model::Interventions;
    use rosetta_train::config::LoraBase;
    let dir = temp_dir("checkpointed");
    let hf = dir.join("model");
    write_tiny_hf(&hf, 11);
    let lora = LoraSection { rank: 4, alpha: 8.0, targets: LoraSection::all_targets(), init: None, base: LoraBase::Auto };

    let gguf = dir.join("tiny-q8_0.gguf");
    std::fs::write(&gguf, rosetta_tests::fixtures::tiny_gguf_q8_0()).unwrap();
    let rows: Vec<PackedRow> = (0..2u32)
        .map(|r| {
            let ids: Vec<u32> = (0..40).map(|i| (i * 7 + r * 13) % 250 + 3).collect();
            // Two documents in each row.
            PackedRow { segments: (0..40).map(|i| u32::from(i >= 17)).collect(), ..PackedRow::single(ids, "hu") }
        })
        .collect();
    // One step of `model`, with or without checkpointing: its loss and every parameter's gradient.
    let step = |name: &str, model: &rosetta_model::CausalLm, checkpointed: bool| {
        let model = model.clone().with_layer_checkpointing(checkpointed);
        let batch = rosetta_model::TokenBatch::single(&rows[0].ids).unwrap();
        let (_, trace) = model.forward_hidden(&batch, &Interventions::none()).unwrap();
        let layers = if checkpointed { model.layers.len() } else { 0 };
        assert_eq!(trace.checkpointed_layers, layers, "{name}, checkpointing {checkpointed}: layers checkpointed");
        let loss = rosetta_train::loss::packed_loss(&model, &rows, 78.0, &Interventions::none()).unwrap();
        let value = loss.clone().into_scalar::<f32>();
        (value, gradients_by_param(&model, &loss.backward()))
    };
    // Within `tolerance` of each parameter's largest gradient.
    let compare = |name: &str,
                   with_lora: bool,
                   tolerance: f32,
                   (loss, grads): (f32, Vec<(String, Vec<f32>)>),
                   (plain_loss, plain_grads): (f32, Vec<(String, Vec<f32>)>)| {
        assert!((loss - plain_loss).abs() <= tolerance * plain_loss.abs(), "{name}: loss {loss} vs {plain_loss}");
        assert_eq!(grads.len(), plain_grads.len(), "{name}: different parameters got gradients");
        assert!(grads.len() >= if with_lora { 2 * 2 * 2 } else { 7 * 2 }, "{name}: only {} gradients", grads.len());
        // Fresh LoRA factors start with B = 0, so A's gradients are exactly zero on both sides.
        let mut zero = 0;
        for ((id, g), (plain_id, pg)) in grads.iter().zip(&plain_grads) {
            assert_eq!(id, plain_id);
            let scale = pg.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = g.iter().zip(pg).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            zero += usize::from(scale == 0.0);
            assert!(worst <= tolerance * scale, "{name}, parameter {id}: max |Δ| {worst} against {scale}");
        }
        assert!(zero <= grads.len() / 2, "{name}: {zero} of {} gradients are zero: little was compared", grads.len());
    };
    let device = Device::flex().autodiff();
    let base = Checkpoint::open(&hf, None).unwrap().load(&device).unwrap();
    let packed_base = Checkpoint::open(&gguf, None).unwrap().load_with(&device, rosetta_model::Precision::PackedBase).unwrap();
    let models = [
        ("full", base.clone()),
        ("LoRA", rosetta_train::adapt::apply_lora(base, &lora, 5).unwrap()),
        ("QLoRA", rosetta_train::adapt::apply_lora(packed_base.clone(), &lora, 5).unwrap()),
        // Packed projections without adapters too, at 80 rows (where inference would take the
        // bf16 route): the forward outside the graph must compute as its replay does.
        (
            "QLoRA on q and v",
            rosetta_train::adapt::apply_lora(
                packed_base,
                &LoraSection { targets: vec!["q_proj".into(), "v_proj".into()], ..lora.clone() },
                5,
            )
            .unwrap(),
        ),
    ];
    for (name, model) in &models {
        compare(name, *name != "full", 1e-5, step(name, model, true), step(name, model, false));
    }
    // The same replay on a GPU backend (lavapipe here): full fine-tuning, GPU float sums.
    if let Some(gpu) = rosetta_tests::wgpu_device() {
        let model = Checkpoint::open(&hf, None).unwrap().load(&gpu.autodiff()).unwrap();
        compare("full on wgpu", false, 1e-4, step("full on wgpu", &model, true), step("full on wgpu", &model, false));
    }

    for (name, model, lora) in [("full", &hf, None), ("lora", &hf, Some(lora.clone())), ("qlora", &gguf, Some(lora.clone()))] {
        let run = |checkpointed: bool| {
            let mut config = tiny_train_config(model, &dir.join(format!("{name}-{checkpointed}")));
            config.lora = lora.clone();
            config.optim.activation_checkpointing = checkpointed;
            config.data.eval = None;
            train(&config, &RunOptions::default(), &mut Quiet).unwrap();
            losses(&config.run.out)
        };
        let (checkpointed, plain) = (run(true), run(false));
        assert_eq!(checkpointed.len(), 12, "{name}: {} steps logged", checkpointed.len());
        for ((step, a), (_, b)) in checkpointed.iter().zip(&plain) {
            assert!((a - b).abs() <= 1e-5 * b.abs(), "{name}, step {step}: {a} checkpointed, {b} plain");
        }
    }
}

fn values(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

#[test]
fn new_embedding_rows_train_alone() {
    let (dir, mut config) = setup("rows");
    config.freeze = FreezeSection { trainable: Trainable::NewEmbeddingRows, new_rows_from: Some(200) };
    config.optim.lr = 1e-2;
    let summary = train(&config, &RunOptions::default(), &mut Quiet).unwrap();
    let device = Device::flex();
    let base = Checkpoint::open(&dir.join("model"), None).unwrap().load(&device).unwrap();
    let tuned = Checkpoint::open(&summary.final_model.unwrap(), None).unwrap().load(&device).unwrap();
    let rows = |m: &rosetta_model::CausalLm, r: std::ops::Range<usize>| m.embed_tokens.weight.val().slice([r, 0..32]);
    let old_delta = (rows(&base, 0..200) - rows(&tuned, 0..200)).abs().max().into_scalar::<f32>();
    let new_delta = (rows(&base, 200..261) - rows(&tuned, 200..261)).abs().max().into_scalar::<f32>();
    assert_eq!(old_delta, 0.0, "frozen rows moved");
    assert!(new_delta > 0.0, "new rows did not train");
    let id = rosetta_model::LinearId::new(0, rosetta_model::LinearKind::UpProj);
    assert_eq!((base.weight(id).unwrap() - tuned.weight(id).unwrap()).abs().max().into_scalar::<f32>(), 0.0);
    // The head is separate in this model: its old columns stay too.
    let head = |m: &rosetta_model::CausalLm| m.lm_head.as_ref().unwrap().weight.val().slice([0..32, 0..200]);
    assert_eq!((head(&base) - head(&tuned)).abs().max().into_scalar::<f32>(), 0.0);
    // Optimizer state for the 61 new rows only: less than one moment of one whole table.
    let state = std::fs::metadata(config.run.out.join("checkpoints/step-000012/optimizer.bpk")).unwrap().len();
    assert!(state < 261 * 32 * 4, "the optimizer keeps {state} bytes: state for the frozen rows too");
    // And a stage-1 run resumes bit for bit from its row-only state.
    let uninterrupted = losses(&config.run.out);
    let (_, mut resumed) = setup("rows-resumed");
    resumed.freeze = config.freeze.clone();
    resumed.optim.lr = 1e-2;
    train(&resumed, &RunOptions { stop_after: Some(8), ..Default::default() }, &mut Quiet).unwrap();
    train(&resumed, &RunOptions { resume: true, ..Default::default() }, &mut Quiet).unwrap();
    assert_eq!(losses(&resumed.run.out), uninterrupted, "a resumed stage-1 run logged other losses");
}

/// `RowAdamW` moves each chosen row of a table exactly as AdamW's dense step moves it, for the
/// embedding's layout (rows) and the head's (columns), over two steps (so its state carries),
/// and leaves every other row untouched.
#[test]
fn row_adamw_steps_the_chosen_rows_as_dense_adamw() {
    use rosetta_model::burn::optim::{AdamWConfig, Optimizer};
    use rosetta_model::burn::tensor::Distribution;
    let device = Device::flex();
    let dir = temp_dir("row-adamw");
    write_tiny_hf(&dir.join("model"), 3);
    let model = Checkpoint::open(&dir.join("model"), None).unwrap().load(&device).unwrap();
    let vocab = model.config().vocab_size;
    let chosen = [2usize, 7, 200, 260];
    let rows = rosetta_train::adapt::TrainableRows::new(&model, &chosen).unwrap();
    let adamw = AdamWConfig::new().with_weight_decay(0.1).build();
    let row_adamw = rows.optimizer(adamw.clone());
    for vocab_axis in [0usize, 1] {
        let shape = if vocab_axis == 0 { [vocab, 8] } else { [8, vocab] };
        let table = Tensor::<2>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let grads = [0, 1].map(|_| Tensor::<2>::random(shape, Distribution::Normal(0.0, 1.0), &device));
        let (mut dense, mut sparse) = (table.clone(), table.clone());
        let (mut dense_state, mut sparse_state) = (None, None);
        for g in &grads {
            (dense, dense_state) = adamw.step(1e-2, dense, g.clone(), dense_state);
            (sparse, sparse_state) = row_adamw.step(1e-2, sparse, g.clone(), sparse_state);
        }
        let line = |t: &Tensor<2>, i: usize| {
            let t = if vocab_axis == 0 { t.clone().slice([i..i + 1, 0..8]) } else { t.clone().slice([0..8, i..i + 1]) };
            t.into_data().try_to_vec::<f32>().unwrap()
        };
        for i in 0..vocab {
            let expected = if chosen.contains(&i) { line(&dense, i) } else { line(&table, i) };
            let got = line(&sparse, i);
            let worst = got.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst <= 1e-6, "vocabulary axis {vocab_axis}, row {i}: off by {worst}");
        }
        assert!(line(&sparse, 7) != line(&table, 7), "vocabulary axis {vocab_axis}: a chosen row did not move");
        assert_eq!(sparse_state.unwrap().momentum.moment_1.dims()[vocab_axis], chosen.len(), "state for other rows");
        // A whole-table state (a checkpoint of the dense step stage 1 took before) is read as
        // its rows' state: the second step then matches the dense one on the chosen rows.
        let (first, dense_state) = adamw.step(1e-2, table.clone(), grads[0].clone(), None);
        let (dense_second, _) = adamw.step(1e-2, first.clone(), grads[1].clone(), dense_state.clone());
        let (sparse_second, _) = row_adamw.step(1e-2, first, grads[1].clone(), dense_state);
        for &i in &chosen {
            let worst = line(&sparse_second, i).iter().zip(&line(&dense_second, i)).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst <= 1e-6, "vocabulary axis {vocab_axis}, row {i} from a whole-table state: off by {worst}");
        }
    }
}

#[test]
fn two_devices_add_up_to_one() {
    let (_, mut one) = setup("dp-one");
    one.run.steps = 4;
    one.run.export = false;
    one.data.eval = None;
    one.data.batch_size = 4;
    let (_, mut two) = setup("dp-two");
    two.run.steps = 4;
    two.run.export = false;
    two.data.eval = None;
    two.data.batch_size = 4;
    two.model.devices = vec!["cpu".into(), "cpu".into()];
    // Two micro-batches a step: each device sums its own before the devices' sums meet.
    one.data.grad_accum = 2;
    two.data.grad_accum = 2;
    train(&one, &RunOptions::default(), &mut Quiet).unwrap();
    // On a thread of a one-thread pool, as `rosetta` runs its commands (`crates/cli/src/threads.rs`):
    // the shards are tasks of that pool, which the waiting thread runs itself (threads of their
    // own, whose kernels' parallel calls queue on the pool, could wait on it forever — this tiny
    // model's calls are small enough to run inline, so the test checks the run, not the hang).
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    pool.install(|| train(&two, &RunOptions::default(), &mut Quiet)).unwrap();
    let (losses_one, losses_two) = (losses(&one.run.out), losses(&two.run.out));
    assert_eq!(losses_one.len(), losses_two.len(), "the two runs logged different step counts");
    assert!(!losses_one.is_empty(), "no losses logged: nothing compared");
    for ((s1, l1), (s2, l2)) in losses_one.into_iter().zip(losses_two) {
        assert_eq!(s1, s2);
        assert!((l1 - l2).abs() < 1e-4 * l1.abs(), "step {s1}: {l1} vs {l2}");
    }
}

#[test]
fn bad_configs_and_data_are_refused() {
    let (dir, config) = setup("bad");
    let check = |text: String, says: &[&str]| {
        let path = dir.join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let err = match TrainConfig::from_toml_file(&path) {
            Ok(c) => train(&c, &RunOptions::default(), &mut Quiet).unwrap_err().to_string(),
            Err(e) => e.to_string(),
        };
        for s in says {
            assert!(err.contains(s), "{err:?} does not mention {s:?}");
        }
    };
    let good = config.to_toml(&Default::default());
    check(good.replace("steps = 12", "stepz = 12"), &["bad.toml", "stepz"]);
    check(good.replace("hu:0.75,en:0.25", "hu:0.75,xx:0.25"), &["`xx`", "matches no document", "hu ("]);
    check(good.replace("hu:0.75,en:0.25", "hu:0.7,en:0.2"), &["sum to"]);
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    check(
        good.replace(&corpus().join("monolingual.train.jsonl").display().to_string(), &empty.display().to_string()),
        &["empty.jsonl", "no documents"],
    );
    check(good.replace("lr = 0.003", "lr = -1.0"), &["optim.lr"]);
    // f16 casts the model, which the layer replay does not take.
    check(
        good.replace("lr = 0.003", "lr = 0.003\nprecision = \"f16\"\nactivation_checkpointing = true"),
        &["config.toml", "activation_checkpointing", "f16"],
    );
    assert!(!config.run.out.exists(), "a refused run wrote its output directory");
}

/// A resume checks the data files by content: one that shrank (or changed in place) since the
/// checkpoint is named with what to do, not a panic or a silently different run.
#[test]
fn a_data_file_changed_since_the_checkpoint_is_refused_on_resume() {
    let (dir, mut config) = setup("changed-data");
    let original = std::fs::read_to_string(corpus().join("monolingual.train.jsonl")).unwrap();
    let data = dir.join("train.jsonl");
    std::fs::write(&data, &original).unwrap();
    config.data.train = vec![data.clone()];
    train(&config, &RunOptions { stop_after: Some(5), ..Default::default() }, &mut Quiet).unwrap();
    let half: String = original.lines().take(original.lines().count() / 2).map(|l| format!("{l}\n")).collect();
    std::fs::write(&data, half).unwrap();
    let resume = || train(&config, &RunOptions { resume: true, ..Default::default() }, &mut Quiet);
    let err = resume().unwrap_err().to_string();
    for says in ["train.jsonl", "changed since the checkpoint at step 4", "Put the original file back"] {
        assert!(err.contains(says), "{err:?} does not mention {says:?}");
    }
    std::fs::write(&data, &original).unwrap();
    assert_eq!(resume().unwrap().last_step, 12);
}

#[test]
fn a_diverging_run_stops_at_the_step_with_the_last_good_checkpoint() {
    let (_, mut config) = setup("nan");
    // Adam's steps have size ≈ lr whatever the gradient; at 1e12 the logits overflow at step 2.
    config.optim.lr = 1e12;
    config.optim.min_lr = 1e12;
    config.optim.warmup_steps = 0;
    config.optim.grad_clip = None;
    config.optim.weight_decay = 0.0;
    config.run.steps = 40;
    config.run.checkpoint_every = 1;
    let err = train(&config, &RunOptions::default(), &mut Quiet).unwrap_err().to_string();
    assert!(err.contains("non-finite loss at step 2") && err.contains("checkpoints/step-000001"), "{err}");
}

/// One training step's gradients — every parameter, full fine-tuning, a packed row with two
/// documents and a padded-out target mask — through the fused CPU kernels (CPU backend under
/// autodiff) and through burn's composed ops they replace (the wgpu backend runs those: Mesa's
/// lavapipe in CI), within 1e-4 of each parameter's largest gradient.
#[test]
fn a_training_step_through_the_fused_kernels_matches_the_composed_ops() {
    use rosetta_model::burn::optim::GradientsParams;
    use rosetta_model::weights::random::RandomWeights;
    use rosetta_model::{CausalLm, Interventions};

    if rosetta_tests::wgpu_device().is_none() {
        return;
    }
    let config = rosetta_tests::fixtures::tiny_config();
    let vocab = config.vocab_size as u32;
    let ids = |n: usize, salt: u32| (0..n as u32).map(|i| (i * 7 + salt * 13 + 3) % vocab).collect::<Vec<u32>>();
    let mut two_documents = rosetta_data::PackedRow::single(ids(29, 1), "en");
    two_documents.segments = (0..29).map(|i| u32::from(i >= 12)).collect();
    two_documents.segment_langs.push("hu".into());
    // The first document's prompt predicts nothing (as SFT's prompts).
    two_documents.targets = (0..29).map(|i| !(3..8).contains(&i)).collect();
    let rows = vec![rosetta_data::PackedRow::single(ids(29, 2), "en"), two_documents];
    let normalizer = rows.iter().map(|r| r.num_predictions()).sum::<usize>() as f32;

    let step = |device: Device| {
        let model = CausalLm::from_source(&config, &RandomWeights::new(&config, 5, 0.2), &device).unwrap();
        let loss = rosetta_train::loss::packed_loss(&model, &rows, normalizer, &Interventions::none()).unwrap();
        let loss_value = loss.clone().into_data().convert::<f32>().try_to_vec::<f32>().unwrap()[0];
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let per_parameter: Vec<(String, Vec<f32>)> = rosetta_train::adapt::parameter_paths(&model)
            .into_iter()
            .map(|(path, id, dims)| {
                let values = match dims.len() {
                    1 => grads.get::<1>(id).map(|g| g.into_data()),
                    2 => grads.get::<2>(id).map(|g| g.into_data()),
                    n => panic!("{path}: a {n}-d parameter"),
                };
                (path.clone(), values.unwrap_or_else(|| panic!("{path}: no gradient")).convert::<f32>().try_to_vec::<f32>().unwrap())
            })
            .collect();
        (loss_value, per_parameter)
    };
    let (fused_loss, fused) = step(Device::flex().autodiff());
    let (composed_loss, composed) = step(Device::wgpu(Default::default()).autodiff());
    assert!((fused_loss - composed_loss).abs() <= 1e-5 * composed_loss.abs(), "loss {fused_loss} vs {composed_loss}");
    assert_eq!(fused.len(), composed.len());
    assert!(fused.len() > 10, "the tiny model has its parameters");
    for ((path, a), (other, b)) in fused.iter().zip(&composed) {
        assert_eq!(path, other, "the two steps list parameters in another order");
        assert_eq!(a.len(), b.len(), "{path}");
        let scale = b.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(scale > 0.0, "{path}: an all-zero gradient compares nothing");
        let worst = a.iter().zip(b).map(|(x, y)| if (x - y).is_nan() { f32::INFINITY } else { (x - y).abs() }).fold(0.0f32, f32::max);
        assert!(worst <= 1e-4 * scale, "{path}: max |Δ| {worst} > 1e-4 × {scale}");
    }
}

/// Counts the steps the trainer reports as skipped (f16 gradients that overflowed).
#[derive(Default)]
struct SkippedSteps(usize);
impl rosetta_train::Observer for SkippedSteps {
    fn message(&mut self, text: &str) {
        self.0 += usize::from(text.contains("step skipped"));
    }
}

/// bf16 and f16 steps (`[optim] precision`) learn like the f32 run, keep f32 master weights and
/// optimizer state, and resume bit for bit — f16 with its loss scale, which skips the steps whose
/// scaled gradients overflow and carries on.
#[test]
fn mixed_precision_learns_keeps_f32_weights_and_resumes() {
    use rosetta_train::precision::TrainPrecision;
    let (_, reference) = setup("precision-f32");
    train(&reference, &RunOptions::default(), &mut Quiet).unwrap();
    let f32_losses = losses(&reference.run.out);
    for precision in [TrainPrecision::Bf16, TrainPrecision::F16] {
        let (_, mut config) = setup(&format!("precision-{}", precision.name()));
        config.optim.precision = precision;
        let mut skipped = SkippedSteps::default();
        train(&config, &RunOptions::default(), &mut skipped).unwrap();
        let ours = losses(&config.run.out);
        assert_eq!(ours.len(), f32_losses.len(), "{precision:?}: every step is logged");
        // Steps before the first applied one repeat the initial weights; compare the applied run.
        for ((step, loss), (_, reference)) in ours.iter().zip(&f32_losses).skip(skipped.0) {
            assert!(
                loss.is_finite() && (loss - reference).abs() <= 0.1 * reference,
                "{precision:?} step {step}: loss {loss} vs f32 {reference}"
            );
        }
        let first: f64 = ours[skipped.0..skipped.0 + 3].iter().map(|l| l.1).sum::<f64>() / 3.0;
        let last: f64 = ours[9..].iter().map(|l| l.1).sum::<f64>() / 3.0;
        assert!(last < first, "{precision:?}: loss did not fall: {first} → {last}");
        let (_, _, model, _) = rosetta_train::trainer::load_run_model(&config.run.out, &Device::flex()).unwrap();
        let dtypes = [model.embed_tokens.weight.val().dtype(), model.layers[0].mlp.down_proj.as_ref().unwrap().weight.val().dtype()];
        assert_eq!(dtypes, [rosetta_model::burn::tensor::DType::F32; 2], "{precision:?}: the saved weights are the f32 masters");
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(config.run.out.join("checkpoints/step-000012/state.json")).unwrap()).unwrap();
        assert_eq!(state["loss_scale"].is_object(), precision == TrainPrecision::F16, "{precision:?}: {state}");
        if precision == TrainPrecision::F16 {
            assert_eq!(state["loss_scale"]["skipped_steps"].as_u64(), Some(skipped.0 as u64), "skipped steps are recorded");
            // Interrupted after step 6 and resumed: the same losses and the same loss scale.
            let (_, mut interrupted) = setup("precision-f16-resume");
            interrupted.optim.precision = precision;
            train(&interrupted, &RunOptions { stop_after: Some(6), ..Default::default() }, &mut Quiet).unwrap();
            train(&interrupted, &RunOptions { resume: true, ..Default::default() }, &mut Quiet).unwrap();
            assert_eq!(losses(&interrupted.run.out), ours, "the resumed f16 run differs from the uninterrupted one");
            let resumed: serde_json::Value =
                serde_json::from_slice(&std::fs::read(interrupted.run.out.join("checkpoints/step-000012/state.json")).unwrap()).unwrap();
            assert_eq!(resumed["loss_scale"], state["loss_scale"]);
        }
        eprintln!("{precision:?}: losses {ours:?}, {} skipped", skipped.0);
    }
    // WebGPU has no bf16: a run asking for it is refused by name before any work.
    if let Some(gpu) = rosetta_tests::wgpu_device() {
        let err = TrainPrecision::Bf16.check_device(&gpu).unwrap_err();
        assert!(err.contains("precision = \"bf16\" is not supported") && err.contains("\"f32\""), "{err}");
    }
}

/// The trainer's AdamW steps through one WGSL dispatch a tensor on wgpu and computes burn's
/// AdamW: the same parameters after a step of a whole model (lavapipe), in a fraction of the
/// launches; on the CPU it is burn's step itself.
#[test]
fn fused_adamw_steps_a_model_as_burns_adamw_does() {
    use rosetta_kernels::adamw::AdamWHyper;
    use rosetta_kernels::wgpu::launches::count_launches;
    use rosetta_model::burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
    use rosetta_train::optimizer::FusedAdamW;
    let hyper = AdamWHyper { beta_1: 0.9, beta_2: 0.95, epsilon: 1e-8, weight_decay: 0.1 };
    let burns = || AdamWConfig::new().with_beta_1(0.9).with_beta_2(0.95).with_epsilon(1e-8).with_weight_decay(0.1).init();
    let params = |model: &rosetta_model::CausalLm| -> Vec<Vec<f32>> {
        let mut out = Vec::new();
        for layer in &model.layers {
            out.push(layer.self_attn.q_proj.as_ref().unwrap().weight.val().into_data().convert::<f32>().try_to_vec::<f32>().unwrap());
            out.push(layer.mlp.down_proj.as_ref().unwrap().weight.val().into_data().convert::<f32>().try_to_vec::<f32>().unwrap());
            out.push(layer.input_layernorm.gamma.val().into_data().convert::<f32>().try_to_vec::<f32>().unwrap());
        }
        out
    };
    let hf = temp_dir("fused-adamw");
    write_tiny_hf(&hf, 11);
    let mut devices = vec![Device::flex().autodiff()];
    devices.extend(rosetta_tests::wgpu_device().map(|gpu| gpu.autodiff()));
    for device in devices {
        let model = Checkpoint::open(&hf, None).unwrap().load(&device).unwrap();
        let ids = rosetta_model::TokenBatch::single(&[256, 116, 104, 101, 97]).unwrap();
        let grads =
            |model: &rosetta_model::CausalLm| GradientsParams::from_grads(model.forward(&ids).powi_scalar(2).mean().backward(), model);
        let (mut ours, mut theirs): (ModuleOptimizer, ModuleOptimizer) = (ModuleOptimizer::from(FusedAdamW::new(hyper)), burns());
        let (mut a, mut b) = (model.clone(), model);
        let (mut launches, mut burns_launches) = (0, 0);
        // Two steps: the second from the moments the first left.
        for _ in 0..2 {
            let (g_a, g_b) = (grads(&a), grads(&b));
            let (stepped, counted) = count_launches(|| ours.step(1e-2, a, g_a));
            (a, launches) = (stepped, counted.total());
            let (stepped, counted) = count_launches(|| theirs.step(1e-2, b, g_b));
            (b, burns_launches) = (stepped, counted.total());
        }
        for (i, (x, y)) in params(&a).iter().zip(params(&b)).enumerate() {
            let scale = y.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = x.iter().zip(&y).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
            assert!(worst <= 1e-5 * scale, "{device:?}, parameter {i}: max |Δ| {worst} against {scale}");
        }
        if rosetta_kernels::is_wgpu(&device) {
            // One dispatch a parameter tensor, where burn's own step launches about fifteen.
            eprintln!("a later AdamW step on wgpu: {launches} launches, burn's {burns_launches}");
            assert!(5 * launches <= burns_launches, "{launches} launches against burn's {burns_launches}");
        }
    }
}
