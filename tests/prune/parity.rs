//! Translation-calibrated Wanda against the reference algorithm (hwichan0720/
//! pruning_for_multilinguality, reproduced in `tests/python/wanda_reference.py`) on tiny random
//! HF checkpoints made by transformers: the same calibration tokens, masks ≥ 99.9% identical and
//! activation norms within 1e-4 relative. Rosetta batches with padding (excluded from the
//! statistics); the reference runs one sample at a time — so this also checks that padding
//! never leaks in. Plus bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and fixtures: a panic is how they report")]

use rosetta_kernels::masking::Sparsity;
use rosetta_model::burn::prelude::*;
use rosetta_model::{Checkpoint, LinearId, LinearKind};
use rosetta_prune::calibration::Calibration;
use rosetta_prune::{PruneError, PruneMethod, PruneOptions, ScoreRule, prune_model};
use rosetta_tests::{python, read_json, run_python, skip, temp_dir, tiny_models, write_json};
use serde_json::json;

/// Deterministic pseudo-random token ids of varied lengths.
fn samples(count: usize, vocab: u32, seed: u64) -> Vec<Vec<u32>> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    (0..count).map(|_| (0..8 + next() % 30).map(|_| 3 + next() % (vocab - 3)).collect()).collect()
}

fn read_bytes(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn wanda_masks_and_norms_match_the_reference() {
    let Some(python) = python() else {
        return skip("no Python reference venv (run scripts/setup-python.sh)");
    };
    let root = tiny_models(&python);
    let work = temp_dir("wanda-parity");
    let cases: [(&str, Sparsity, bool); 4] = [
        ("llama_gqa_tied", Sparsity::Unstructured(0.5), false),
        ("qwen2_bias_gqa", Sparsity::Unstructured(0.3), false),
        ("llama_bias_llama3_rope", Sparsity::NM { n: 2, m: 4 }, false),
        ("mistral_sliding", Sparsity::Unstructured(0.5), true),
    ];
    for (name, sparsity, mt_code) in cases {
        let calib = samples(12, 300, 7);
        let code = samples(6, 300, 99);
        let dir = work.join(format!("{name}-{mt_code}"));
        let request = dir.join("request.json");
        std::fs::create_dir_all(&dir).unwrap();
        let nm = match sparsity {
            Sparsity::NM { n, m } => json!([m - n, m]),
            Sparsity::Unstructured(_) => json!(null),
        };
        let sparsity_value = match sparsity {
            Sparsity::Unstructured(s) => s,
            Sparsity::NM { .. } => 0.5,
        };
        let mut body = json!({"samples": calib, "sparsity": sparsity_value, "nm": nm});
        if mt_code {
            body["code_samples"] = json!(code);
        }
        write_json(&request, &body);
        let answer = dir.join("reference");
        let model_dir = root.join(name);
        run_python(&python, "wanda_reference.py", &[model_dir.to_str().unwrap(), request.to_str().unwrap(), answer.to_str().unwrap()]);

        let checkpoint = Checkpoint::open(&model_dir, None).unwrap();
        let mut model = checkpoint.load(&Device::flex()).unwrap();
        // Batches of 5 with right padding: the statistics must ignore the padding.
        let mut calibration = Calibration::from_ids(calib.clone(), 5, 0).unwrap();
        let mut code_calibration = Calibration::from_ids(code.clone(), 4, 0).unwrap();
        let options = PruneOptions {
            method: PruneMethod::Wanda,
            sparsity,
            rule: if mt_code { ScoreRule::MtCode } else { ScoreRule::Plain },
            seed: 0,
        };
        let code_arg = mt_code.then_some(&mut code_calibration);
        let (masks, summary) = prune_model(&mut model, Some(&mut calibration), code_arg, &options, |_, _| {}).unwrap();

        let result = read_json(&answer.join("result.json"));
        let (mut same, mut total, mut worst_norm) = (0usize, 0usize, 0f32);
        for layer in 0..model.num_layers() {
            for kind in LinearKind::ALL {
                let id = LinearId::new(layer, kind);
                let hf = id.hf_weight_name();
                assert!(result["shapes"].get(&hf).is_some(), "{name}: reference has no {hf}");
                let theirs = read_bytes(&answer.join(format!("{hf}.mask.u8")));
                let ours: Vec<bool> = masks[&id].clone().into_data().convert::<bool>().try_to_vec::<bool>().unwrap();
                assert_eq!(ours.len(), theirs.len(), "{name} {hf}: mask sizes");
                // The summary's count (computed without reading the mask back) is the mask's.
                assert_eq!(ours.iter().filter(|k| !**k).count(), summary.layers[&id.to_string()].0, "{name} {hf}: pruned count");
                same += ours.iter().zip(&theirs).filter(|(a, b)| **a == (**b == 1)).count();
                total += ours.len();
                let their_norm: Vec<f32> = read_bytes(&answer.join(format!("{hf}.norm.f32")))
                    .chunks(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                let our_norm: Vec<f32> = summary.activation_norms[&id].clone().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
                assert_eq!(our_norm.len(), their_norm.len(), "{name} {hf}: activation norm sizes");
                for (a, b) in our_norm.iter().zip(&their_norm) {
                    worst_norm = worst_norm.max((a - b).abs() / b.abs().max(1e-6));
                }
                // The model's weights are zero exactly where the mask says pruned.
                let w: Vec<f32> = model.weight(id).unwrap().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
                assert_eq!(w.len(), ours.len(), "{name} {hf}: weight and mask sizes");
                assert!(w.iter().zip(&ours).all(|(v, keep)| *keep || *v == 0.0), "{name} {hf}: pruned weight not zero");
            }
        }
        let agreement = same as f64 / total as f64;
        eprintln!("{name} {sparsity:?} mt_code={mt_code}: masks {:.5} identical, norms max rel Δ {worst_norm:.2e}", agreement);
        assert!(agreement >= 0.999, "{name}: only {agreement:.5} of the mask entries agree");
        assert!(worst_norm <= 1e-4, "{name}: activation norms differ by {worst_norm:e} relative");
        if let Sparsity::Unstructured(s) = sparsity {
            assert!((summary.sparsity() - s).abs() < 0.01, "{name}: sparsity {} for {s}", summary.sparsity());
        }
    }
}

#[test]
fn bad_settings_and_calibration_are_clear_errors() {
    let config = rosetta_tests::fixtures::tiny_config();
    let mut model = rosetta_tests::fixtures::tiny_model(1);
    let mut calibration = Calibration::from_ids(vec![vec![5, 6, 7]], 2, 0).unwrap();
    for (sparsity, needle) in [
        (Sparsity::Unstructured(1.0), "[0, 1)"),
        (Sparsity::Unstructured(-0.1), "[0, 1)"),
        (Sparsity::NM { n: 4, m: 4 }, "N:M"),
        (Sparsity::NM { n: 2, m: 5 }, "divisible"),
    ] {
        let options = PruneOptions { method: PruneMethod::Wanda, sparsity, rule: ScoreRule::Plain, seed: 0 };
        let err = prune_model(&mut model, Some(&mut calibration), None, &options, |_, _| {}).unwrap_err().to_string();
        assert!(err.contains(needle), "{sparsity:?}: {err}");
    }
    let options = PruneOptions { method: PruneMethod::Wanda, sparsity: Sparsity::Unstructured(0.5), rule: ScoreRule::Plain, seed: 0 };
    assert!(prune_model(&mut model, None, None, &options, |_, _| {}).unwrap_err().to_string().contains("calibration"));
    let mt_code = PruneOptions { rule: ScoreRule::MtCode, ..options };
    assert!(prune_model(&mut model, Some(&mut calibration), None, &mt_code, |_, _| {}).unwrap_err().to_string().contains("code"));
    assert!(Calibration::from_ids(vec![], 4, 0).is_err());
    let tokenizer = rosetta_tests::fixtures::tiny_tokenizer();
    assert!(matches!(Calibration::new(&tokenizer, &[], 4, 64), Err(PruneError::Invalid(_))));
    let long = "the ".repeat(200);
    match Calibration::new(&tokenizer, &[long], 4, config.max_position_embeddings / 8) {
        Err(PruneError::PromptTooLong { index: 0, limit: 64, .. }) => {}
        other => panic!("a prompt over the context must be refused, got {:?}", other.map(|c| c.tokens)),
    }
    assert!("sparse".parse::<PruneMethod>().is_err());
}

#[test]
fn magnitude_and_random_prune_exactly_the_requested_fraction_per_row() {
    for method in [PruneMethod::Magnitude, PruneMethod::Random] {
        let mut model = rosetta_tests::fixtures::tiny_model(2);
        let options = PruneOptions { method, sparsity: Sparsity::Unstructured(0.25), rule: ScoreRule::Plain, seed: 3 };
        let (masks, summary) = prune_model(&mut model, None, None, &options, |_, _| {}).unwrap();
        for (id, keep) in &masks {
            let [rows, cols] = keep.dims();
            let kept = keep.clone().int().sum_dim(1).into_data().convert::<i64>().try_to_vec::<i64>().unwrap();
            assert!(kept.iter().all(|&k| k as usize == cols - cols / 4), "{method:?} {id}: {kept:?} of {cols} kept per row ({rows} rows)");
        }
        assert!((summary.sparsity() - 0.25).abs() < 0.02);
    }
}

#[test]
fn pruned_weights_store_compressed_and_read_back_exactly() {
    use rosetta_model::export::{ExportDtype, ExportOptions, export_hf};
    let mut model = rosetta_tests::fixtures::tiny_model(8);
    let tokenizer = rosetta_tests::fixtures::tiny_tokenizer();
    let options = PruneOptions { method: PruneMethod::Magnitude, sparsity: Sparsity::Unstructured(0.5), rule: ScoreRule::Plain, seed: 0 };
    prune_model(&mut model, None, None, &options, |_, _| {}).unwrap();
    let dir = temp_dir("sparse-export");
    let size = |sparse: bool, dtype: ExportDtype| {
        let out = dir.join(format!("{sparse}-{dtype:?}"));
        let options = ExportOptions { overwrite: true, dtype, sparse_from: sparse.then_some(0.1), ..Default::default() };
        export_hf(&model, &tokenizer, &out, &options).unwrap();
        (out.clone(), std::fs::metadata(out.join("model.safetensors")).unwrap().len())
    };
    let (dense_dir, dense) = size(false, ExportDtype::F32);
    let (sparse_dir, sparse) = size(true, ExportDtype::F32);
    let ids = [5u32, 9, 40, 7, 200];
    let logits = |m: &rosetta_model::CausalLm| {
        m.forward(&rosetta_model::TokenBatch::single(&ids).unwrap()).into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    };
    let linear_ids: Vec<LinearId> =
        (0..model.num_layers()).flat_map(|l| LinearKind::ALL.into_iter().map(move |k| LinearId::new(l, k))).collect();
    let weights = |m: &rosetta_model::CausalLm, id: LinearId| m.weight(id).unwrap().into_data().try_to_vec::<f32>().unwrap();
    // Every weight bit for bit; the logits then agree up to the GEMM's summation order, which
    // may follow the weights' memory layout (a reloaded weight is contiguous, an edited one a view).
    let expected = logits(&model);
    let scale = expected.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    for dir in [&sparse_dir, &dense_dir] {
        let checkpoint = Checkpoint::open(dir, None).unwrap();
        assert!(checkpoint.config.num_parameters() > 0);
        let reloaded = checkpoint.load(&Device::flex()).unwrap();
        for &id in &linear_ids {
            assert_eq!(weights(&reloaded, id), weights(&model, id), "{}: {id:?} reads back differently", dir.display());
        }
        let got = logits(&reloaded);
        assert_eq!(got.len(), expected.len());
        let worst = got.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst <= 1e-6 * scale, "{}: logits differ by {worst} (scale {scale})", dir.display());
    }
    // At 50% sparsity each f32 linear weight costs half its values plus 1/32 for the map: the
    // file shrinks by over 40% of the linear weights' dense bytes (headers take a little).
    let linear_bytes: usize = linear_ids.iter().map(|&id| model.weight(id).unwrap().dims().iter().product::<usize>() * 4).sum();
    assert!(
        ((dense - sparse) as f64) > 0.4 * linear_bytes as f64,
        "compressed {sparse} bytes vs dense {dense} ({linear_bytes} of linear weights)"
    );
    eprintln!("tiny model, 50% pruned: dense f32 {dense} B, compressed f32 {sparse} B");

    // A compressed weight whose values were cut is refused, naming the weight.
    let path = sparse_dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let parsed = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for (name, view) in parsed.tensors() {
        let (mut shape, mut data) = (view.shape().to_vec(), view.data().to_vec());
        if name == "model.layers.0.mlp.up_proj.weight.sparse.values" {
            shape[0] -= 1;
            data.truncate(data.len() - 4);
        }
        tensors.push((name, view.dtype(), shape, data));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> =
        tensors.iter().map(|(n, d, s, b)| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap())).collect();
    let metadata = meta.metadata().clone();
    std::fs::write(&path, safetensors::serialize(views, metadata).unwrap()).unwrap();
    let err = Checkpoint::open(&sparse_dir, None)
        .and_then(|c| c.load(&Device::flex()))
        .expect_err("a cut compressed weight must be refused")
        .to_string();
    assert!(err.contains("model.layers.0.mlp.up_proj.weight") && err.contains("keep-bitmap"), "{err}");
}
