//! ShifCon end to end on tiny random models: the subspace distance against NumPy/SciPy, the
//! geometry and band on a real forward pass, the shift's algebra inside the model (toward then
//! back is the identity, per-token equals per-row), the released code's conventions against its
//! formulas computed by hand, the unshifted ablation, ShifCon training (both conventions) that
//! exports its plan and resumes exactly, and the bad inputs the issue names.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and fixtures: a panic is how they report")]

use std::collections::BTreeMap;

use rosetta_data::PackedRow;
use rosetta_data::corpus::CorpusDir;
use rosetta_kernels::contrastive::{ContrastiveOptions, contrastive_loss_reference, shift_positives};
use rosetta_model::burn::prelude::*;
use rosetta_model::{Checkpoint, Interventions, Pooling, TokenBatch};
use rosetta_shifcon::conventions::released_area;
use rosetta_shifcon::geometry::{GeometryOptions, analyse};
use rosetta_shifcon::states::{StateOptions, sentence_batch, sentence_states_blocking};
use rosetta_shifcon::subspace::{DistanceOptions, subspace_distance};
use rosetta_shifcon::{Conventions, Matrix, ShifconConfig, ShifconError, ShifconMethod, ShiftPlan, plan_from_extras};
use rosetta_tests::fixtures::{tiny_deep_model, tiny_tokenizer, tiny_train_config, write_tiny_deep_hf};
use rosetta_tests::{python, read_json, run_python, skip, temp_dir, write_json};
use rosetta_train::Method;
use rosetta_train::trainer::{Quiet, RunOptions, train_with};
use serde_json::json;

/// Rows with a decaying spectrum and a per-set offset, like sentence states.
fn structured(rows: usize, cols: usize, seed: u64, offset: f64) -> Matrix {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let data = (0..rows * cols).map(|i| offset + next() * 4.0 / (1.0 + (i % cols) as f64).sqrt()).collect();
    Matrix { rows, cols, data }
}

fn as_json(m: &Matrix) -> serde_json::Value {
    json!((0..m.rows).map(|i| m.row(i).to_vec()).collect::<Vec<_>>())
}

#[test]
fn subspace_distance_matches_numpy_and_scipy() {
    let Some(python) = python() else {
        return skip("no Python reference venv (run scripts/setup-python.sh)");
    };
    let cases = [
        (structured(40, 24, 1, 0.0), structured(50, 24, 2, 0.3), 8, 0.1),
        (structured(60, 48, 3, 0.0), structured(45, 48, 4, -1.0), 16, 0.0),
        (structured(30, 64, 5, 2.0), structured(30, 64, 6, 2.0), 16, 0.3),
        (structured(20, 10, 7, 0.0), structured(26, 10, 8, 0.5), 4, 0.05),
    ];
    let dir = temp_dir("subspace-distance");
    let input: Vec<_> = cases
        .iter()
        .map(|(a, b, dims, shrinkage)| json!({"a": as_json(a), "b": as_json(b), "dims": dims, "shrinkage": shrinkage}))
        .collect();
    write_json(&dir.join("cases.json"), &json!(input));
    run_python(&python, "subspace_distance.py", &[dir.join("cases.json").to_str().unwrap(), dir.join("out.json").to_str().unwrap()]);
    let expected = read_json(&dir.join("out.json"));
    for (i, (a, b, dims, shrinkage)) in cases.iter().enumerate() {
        let ours = subspace_distance(a, b, &DistanceOptions { dims: *dims, shrinkage: *shrinkage }).unwrap();
        let theirs = &expected[i];
        assert_eq!(ours.dims as u64, theirs["dims"].as_u64().unwrap());
        for (mine, reference) in [(ours.covariance, &theirs["covariance"]), (ours.mean, &theirs["mean"])] {
            let reference = reference.as_f64().unwrap();
            assert!((mine - reference).abs() <= 1e-8 * reference.abs().max(1.0), "case {i}: {mine} vs SciPy {reference}");
        }
    }
}

/// `n` aligned sentences per language from the embedded corpus.
fn parallel_texts(langs: &[&str], n: usize) -> BTreeMap<String, Vec<String>> {
    let (corpus, _) = rosetta_data::ParallelCorpus::read(&CorpusDir::embedded().parallel_train(), rosetta_data::BadLines::Fail).unwrap();
    let langs: Vec<String> = langs.iter().map(|l| l.to_string()).collect();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, texts) in corpus.aligned(&langs).unwrap().into_iter().take(n) {
        for (lang, text) in langs.iter().zip(texts) {
            out.entry(lang.clone()).or_default().push(text.chars().take(120).collect());
        }
    }
    out
}

#[test]
fn geometry_of_a_tiny_model_chooses_a_band_inside_it() {
    let model = tiny_deep_model(3, 8);
    let tokenizer = tiny_tokenizer();
    let texts = parallel_texts(&["en", "hu", "de"], 40);
    let sites: Vec<usize> = (0..=8).collect();
    let options = StateOptions { batch_size: 16, max_tokens: 48, ..StateOptions::default() };
    let mut states = BTreeMap::new();
    for (lang, sentences) in &texts {
        let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
        states.insert(
            lang.clone(),
            sentence_states_blocking(&model, &tokenizer, &refs, &sites, &options, &Interventions::none(), |_| {}).unwrap(),
        );
    }
    // Batching and sorting by length do not change a sentence's state.
    let one: Vec<&str> = vec![texts["hu"][7].as_str()];
    let alone = sentence_states_blocking(&model, &tokenizer, &one, &[5], &options, &Interventions::none(), |_| {}).unwrap();
    let batched = &states["hu"][5];
    let max_diff = alone[0].row(0).iter().zip(batched.row(7)).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(max_diff < 1e-4, "a sentence's state depends on its batch: {max_diff}");

    let geometry = analyse(&states, &GeometryOptions::default()).unwrap();
    assert_eq!(geometry.sites.len(), 9);
    let band = &geometry.band;
    assert!(band.to >= 1 && band.back <= 8 && band.back - band.to == 3, "{band:?}");
    for site in &geometry.sites {
        for (lang, l) in &site.langs {
            assert!(l.shifted.total().is_finite() && l.shifted.covariance >= 0.0, "{lang} at {}: {l:?}", site.site);
            assert!((0.0..=1.0).contains(&l.retrieval_top1));
            // The shift's length is the distance between the saved language vectors.
            let (v_en, v_l) = (&geometry.vectors["en"][site.site], &geometry.vectors[lang][site.site]);
            let length = v_en.iter().zip(v_l).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>().sqrt();
            assert!((length - l.shift_norm).abs() < 1e-4 * l.shift_norm.max(1.0), "{lang} at {}", site.site);
        }
        assert_eq!(site.pca["en"].len(), 40);
    }
    // The saved vectors are the language means.
    let mean_hu_5 = states["hu"][5].column_means();
    assert!(geometry.vectors["hu"][5].iter().zip(&mean_hu_5).all(|(a, b)| (*a as f64 - b).abs() < 1e-5));
    // The band's resampled uncertainty is recorded, its modal window is the band.
    let stability = band.stability.as_ref().expect("the default options resample");
    assert_eq!(stability.resamples, GeometryOptions::default().bootstrap);
    // The resampling is seeded (the same shares again), and without it the band is the window
    // all sentences pick.
    let again = analyse(&states, &GeometryOptions::default()).unwrap();
    assert_eq!(again.band.stability.as_ref(), Some(stability));
    let unresampled = analyse(&states, &GeometryOptions { bootstrap: 0, ..Default::default() }).unwrap().band;
    assert!(unresampled.stability.is_none());
    assert_eq!([unresampled.to, unresampled.back], band.point_estimate);
    let shares: f64 = stability.wins.iter().map(|w| w.frequency).sum();
    assert!((shares - 1.0).abs() < 1e-9, "{shares}");
    assert_eq!(stability.uncertain, stability.frequency < rosetta_shifcon::geometry::CERTAIN_FREQUENCY);
    assert!(band.to >= band.earliest && band.earliest == 3, "{band:?}");
    // A shift changes no covariance: the shifted and the raw covariance terms are one number,
    // and the band criterion is their mean over languages.
    for site in &geometry.sites {
        let mean: f64 = site.langs.values().map(|l| l.shifted.covariance).sum::<f64>() / site.langs.len() as f64;
        assert!((site.band_criterion - mean).abs() < 1e-12);
        assert!(site.langs.values().all(|l| l.shifted.covariance == l.raw.covariance && l.shifted.mean_noise > 0.0));
    }
    let plan = ShiftPlan::from_site_vectors("en", band.to, band.back, &geometry.vectors, Conventions::Rosetta).unwrap();
    plan.check(&model).unwrap();
}

/// Per-token states `[seq, d]` of one sentence at `site`, read back.
fn token_states(model: &rosetta_model::CausalLm, batch: &TokenBatch, site: usize) -> (usize, Vec<f32>) {
    let (_, trace) = model.forward_layers(batch, None, 0..site, &Interventions::none().capture(site, Pooling::PerToken)).unwrap();
    let tensor = trace.residual[&site].per_token().unwrap().clone();
    let [_, seq, _] = tensor.dims();
    (seq, tensor.into_data().try_to_vec::<f32>().unwrap())
}

#[test]
fn released_conventions_reproduce_the_released_formulas() {
    let model = tiny_deep_model(21, 6);
    let tokenizer = tiny_tokenizer();
    let texts = parallel_texts(&["en", "hu"], 10);
    let refs: BTreeMap<String, Vec<&str>> = texts.iter().map(|(l, t)| (l.clone(), t.iter().map(String::as_str).collect())).collect();
    let plan = ShiftPlan::estimate_blocking(&model, &tokenizer, &refs, "en", [3, 5], Conventions::Released).unwrap();
    assert_eq!(plan.conventions, Conventions::Released);

    // Vectors: every sentence's states averaged over all its tokens, start token included, then
    // scaled to unit length; the language vector is the mean of those (not renormalised).
    let d = 32;
    for (lang, sentences) in &refs {
        for (site, saved) in [(3, &plan.vectors[lang].at_to), (5, &plan.vectors[lang].at_back)] {
            let mut vector = vec![0.0f64; d];
            for text in sentences {
                let batch = sentence_batch(&tokenizer, &[text], 96).unwrap();
                let (seq, states) = token_states(&model, &batch, site);
                let mut mean: Vec<f64> = (0..d).map(|j| (0..seq).map(|t| states[t * d + j] as f64).sum::<f64>() / seq as f64).collect();
                let len = mean.iter().map(|v| v * v).sum::<f64>().sqrt();
                mean.iter_mut().for_each(|v| *v /= len);
                vector.iter_mut().zip(&mean).for_each(|(v, m)| *v += m / sentences.len() as f64);
            }
            let diff = vector.iter().zip(saved.iter()).map(|(a, b)| (a - *b as f64).abs()).fold(0.0, f64::max);
            assert!(diff < 1e-6, "{lang} at site {site}: the released vector differs by {diff}");
        }
    }

    // Placement: measured at F = 3 and B = 5, added to the inputs of layers 2 and 4.
    let device = model.device();
    let hu = TokenBatch::single(&"Kezdetben teremtette Isten".bytes().map(u32::from).collect::<Vec<_>>()).unwrap();
    let row = |a: &[f32], b: &[f32]| {
        Tensor::<2>::from_data(TensorData::new(a.iter().zip(b).map(|(x, y)| x - y).collect::<Vec<f32>>(), [1, d]), &device)
    };
    let (en_v, hu_v) = (&plan.vectors["en"], &plan.vectors["hu"]);
    let by_hand = Interventions::none().shift(2, row(&en_v.at_to, &hu_v.at_to)).shift(4, row(&hu_v.at_back, &en_v.at_back));
    let planned = logits(&model, &hu, &plan.interventions("hu", &device).unwrap());
    let expected = logits(&model, &hu, &by_hand);
    let max = planned.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(max < 1e-6, "the released plan is not added one layer early: {max}");
    let at_measured_sites =
        logits(&model, &hu, &Interventions::none().shift(3, row(&en_v.at_to, &hu_v.at_to)).shift(5, row(&hu_v.at_back, &en_v.at_back)));
    assert!(planned.iter().zip(&at_measured_sites).any(|(a, b)| (a - b).abs() > 1e-6), "placement must matter here");
    // The released area, 12..15 of 32 layers, scaled to 30.
    assert_eq!(released_area(30), [11, 14]);

    // Contrastive logits by hand (one layer, two pairs): e = unit[(3,0),(0,2)] = [(1,0),(0,1)],
    // t = unit[(4,3),(0,−1)] = [(.8,.6),(0,−1)], re-centred t' = t − mean t + mean e =
    // [(.9,1.3),(.1,−.3)], logits e·t'ᵀ = [[.9,.1],[1.3,−.3]]; CE over rows 1.0775007034,
    // over columns 0.9130152524, mean 0.9952579779 (Python, float64).
    let m = |v: [f32; 4]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [2, 2]), &Device::flex());
    let unit = |t: Tensor<2>| t.clone() / t.square().sum_dim(1).sqrt();
    let (e, t) = (unit(m([3.0, 0.0, 0.0, 2.0])), unit(m([4.0, 3.0, 0.0, -1.0])));
    let recentred = shift_positives(&e, t.clone()).into_data().try_to_vec::<f32>().unwrap();
    for (got, want) in recentred.iter().zip([0.9, 1.3, 0.1, -0.3]) {
        assert!((got - want).abs() < 1e-6, "{recentred:?}");
    }
    let loss = contrastive_loss_reference(e, t, ContrastiveOptions { scale: 1.0, shift: true }).unwrap().into_scalar::<f32>();
    assert!((loss as f64 - 0.995_257_977_909_005_5).abs() < 1e-6, "{loss}");
}

#[test]
fn the_unshifted_ablation_runs_the_contrastive_pass_unshifted() {
    let dir = temp_dir("shifcon-ablation");
    let model_dir = dir.join("model");
    write_tiny_deep_hf(&model_dir, 13, 6);
    let model = Checkpoint::open(&model_dir, None).unwrap().load(&Device::flex()).unwrap();
    let tokenizer = tiny_tokenizer();
    let device = model.device();
    let run = |ablated: bool| {
        let mut config = shifcon_config(&model_dir, &dir.join(if ablated { "ablated" } else { "method" }), Some([2, 4]));
        config.run.steps = 1;
        config.run.eval_every = 1;
        config.data.eval = None;
        edit_settings(&mut config, |s| {
            s.update_vectors_every = 0;
            s.shift_contrastive = ablated.then_some(false);
        });
        let mut shifcon = method(&config);
        shifcon.start(&model, &tokenizer).unwrap();
        let shifts = shifcon.contrastive_target_interventions("hu", &device).unwrap().shifts;
        let sites: Vec<usize> = shifts.iter().map(|s| s.site).collect();
        let first = losses(&train_with(&config, &RunOptions::default(), &mut Quiet, Some(&mut method(&config))).unwrap().metrics)[0].1;
        (sites, first)
    };
    let (ablated_sites, ablated) = run(true);
    let (method_sites, shifted) = run(false);
    assert!(ablated_sites.is_empty(), "the ablation still shifts the target pass at {ablated_sites:?}");
    assert_eq!(method_sites, vec![2, 4]);
    assert!((ablated - shifted).abs() > 1e-6, "the shifted and unshifted contrastive terms agree ({ablated})");
}

#[test]
fn released_conventions_train_with_online_vectors_and_resume_exactly() {
    let dir = temp_dir("shifcon-released");
    let model_dir = dir.join("model");
    write_tiny_deep_hf(&model_dir, 17, 6);
    let config = |out: &str| {
        let mut config = shifcon_config(&model_dir, &dir.join(out), None);
        edit_settings(&mut config, |s| {
            s.conventions = Conventions::Released;
            s.update_vectors_every = 0;
        });
        config
    };
    let whole = config("whole");
    let summary = train_with(&whole, &RunOptions::default(), &mut Quiet, Some(&mut method(&whole))).unwrap();
    let reference = losses(&summary.metrics);
    assert_eq!(reference.len(), 6);
    assert!(reference.iter().all(|(l, c)| l.is_finite() && c.is_finite()), "{reference:?}");
    let exported = Checkpoint::open(summary.final_model.as_ref().unwrap(), None).unwrap();
    let record = &exported.extras.as_ref().unwrap()["shifcon"];
    assert_eq!(record["band_chosen_by"], "the released area scaled to the model");
    let plan = plan_from_extras(exported.extras.as_ref()).unwrap().expect("the export carries the online vectors");
    assert_eq!((plan.conventions, [plan.to, plan.back]), (Conventions::Released, released_area(6)));
    // Means of unit-length states: no longer than 1.
    for v in plan.vectors.values() {
        assert!(v.at_to.iter().map(|x| x * x).sum::<f32>().sqrt() <= 1.0 + 1e-5);
    }
    let interrupted = config("interrupted");
    train_with(&interrupted, &RunOptions { resume: false, stop_after: Some(3) }, &mut Quiet, Some(&mut method(&interrupted))).unwrap();
    let resumed = losses(
        &train_with(&interrupted, &RunOptions { resume: true, stop_after: None }, &mut Quiet, Some(&mut method(&interrupted)))
            .unwrap()
            .metrics,
    );
    assert_eq!(resumed, reference, "a resumed run must carry the online sums");
}

fn logits(model: &rosetta_model::CausalLm, batch: &TokenBatch, interventions: &Interventions) -> Vec<f32> {
    model.forward_with(batch, interventions).unwrap().0.into_data().try_to_vec::<f32>().unwrap()
}

#[test]
fn shift_then_back_is_the_identity_and_per_token_equals_per_row() {
    let model = tiny_deep_model(4, 6);
    let device = model.device();
    let ids: Vec<u32> = "Kezdetben teremtette Isten".bytes().map(u32::from).collect();
    let batch = TokenBatch::single(&ids).unwrap();
    let plain = logits(&model, &batch, &Interventions::none());
    let delta: Vec<f32> = (0..32).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.3).collect();
    let row = |sign: f32| Tensor::<2>::from_data(TensorData::new(delta.iter().map(|v| v * sign).collect::<Vec<_>>(), [1, 32]), &device);
    let there_and_back = logits(&model, &batch, &Interventions::none().shift(3, row(1.0)).shift(3, row(-1.0)));
    let max = plain.iter().zip(&there_and_back).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(max < 1e-5, "shift then shift back at one site changed the logits by {max}");
    let shifted = logits(&model, &batch, &Interventions::none().shift(3, row(1.0)));
    assert!(plain.iter().zip(&shifted).any(|(a, b)| (a - b).abs() > 1e-3), "a shift must change the output");

    // A plan applied per row (one language) and per token (packed rows of that language) agree.
    let vectors: BTreeMap<String, Vec<Vec<f32>>> = [("en", 0.0f32), ("hu", 1.0)]
        .into_iter()
        .map(|(l, s)| (l.to_string(), (0..=6).map(|site| (0..32).map(|i| s * ((i + site) % 5) as f32 * 0.2).collect()).collect()))
        .collect();
    let plan = ShiftPlan::from_site_vectors("en", 2, 5, &vectors, Conventions::Rosetta).unwrap();
    let rows = vec![PackedRow::single(ids.clone(), "hu"), PackedRow::single(ids.iter().rev().copied().collect(), "hu")];
    let packed = TokenBatch::packed(rows.iter().flat_map(|r| r.ids.clone()).collect(), vec![0; 2 * ids.len()], 2, ids.len()).unwrap();
    let per_token = logits(&model, &packed, &plan.per_token_interventions(&rows, &device));
    let per_row = logits(&model, &packed, &plan.interventions("hu", &device).unwrap());
    let max = per_token.iter().zip(&per_row).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(max < 1e-5, "per-token and per-row shifts differ by {max}");
    // English rows are never shifted.
    let english = vec![PackedRow::single(ids.clone(), "en")];
    assert!(plan.per_token_interventions(&english, &device).shifts.is_empty());
    assert!(plan.interventions("en", &device).unwrap().shifts.is_empty());
}

fn shifcon_config(model: &std::path::Path, out: &std::path::Path, band: Option<[usize; 2]>) -> rosetta_train::TrainConfig {
    let mut config = tiny_train_config(model, out);
    config.run.steps = 6;
    config.run.checkpoint_every = 2;
    config.run.eval_every = 6;
    let mut settings = ShifconConfig::new(CorpusDir::embedded().parallel_train(), vec!["hu".into()]);
    settings.band = band;
    settings.vector_sentences = 24;
    settings.update_vectors_every = 3;
    settings.pairs_per_batch = 4;
    config.methods.insert("shifcon".into(), settings.to_table());
    config
}

/// Edits the config's `[shifcon]` table through its typed form.
fn edit_settings(config: &mut rosetta_train::TrainConfig, edit: impl FnOnce(&mut ShifconConfig)) {
    let table = config.methods.get_mut("shifcon").unwrap();
    let mut settings: ShifconConfig = toml::Value::Table(table.clone()).try_into().unwrap();
    edit(&mut settings);
    *table = settings.to_table();
}

/// The method the config's table describes, built the way `rosetta train` builds it.
fn method(config: &rosetta_train::TrainConfig) -> ShifconMethod {
    ShifconMethod::from_table(&config.methods["shifcon"], &config.base_dir, config.run.seed).unwrap()
}

fn losses(metrics: &std::path::Path) -> Vec<(f64, f64)> {
    std::fs::read_to_string(metrics)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("loss").is_some())
        .map(|v| (v["loss"].as_f64().unwrap(), v["parts"]["contrastive"].as_f64().unwrap()))
        .collect()
}

#[test]
fn shifcon_trains_exports_its_plan_and_resumes_exactly() {
    let dir = temp_dir("shifcon-train");
    let model_dir = dir.join("model");
    write_tiny_deep_hf(&model_dir, 9, 6);

    // Band chosen by the geometry.
    let config = shifcon_config(&model_dir, &dir.join("auto"), None);
    let summary = train_with(&config, &RunOptions::default(), &mut Quiet, Some(&mut method(&config))).unwrap();
    let uninterrupted = losses(&summary.metrics);
    assert_eq!(uninterrupted.len(), 6);
    assert!(uninterrupted.iter().all(|(l, c)| l.is_finite() && *c > 0.0), "{uninterrupted:?}");
    let exported = Checkpoint::open(summary.final_model.as_ref().unwrap(), None).unwrap();
    let record = &exported.extras.as_ref().unwrap()["shifcon"];
    assert_eq!(record["band_chosen_by"], "subspace distance (covariance term), modal window under resampling");
    assert!(record["band_choice"]["stability"]["frequency"].as_f64().unwrap() > 0.0, "{record}");
    assert_eq!(record["distances"].as_array().unwrap().len(), 7);
    let plan = plan_from_extras(exported.extras.as_ref()).unwrap().expect("the export carries the plan");
    assert_eq!(plan.langs(), vec!["hu"]);
    assert!(plan.to >= 1 && plan.back <= 6);

    // Interrupted after step 3 (vectors re-estimated at 3) and resumed: the same losses.
    let config = shifcon_config(&model_dir, &dir.join("resumed"), Some([plan.to, plan.back]));
    let fixed = shifcon_config(&model_dir, &dir.join("fixed"), Some([plan.to, plan.back]));
    let reference = losses(&train_with(&fixed, &RunOptions::default(), &mut Quiet, Some(&mut method(&fixed))).unwrap().metrics);
    train_with(&config, &RunOptions { resume: false, stop_after: Some(4) }, &mut Quiet, Some(&mut method(&config))).unwrap();
    let resumed = losses(
        &train_with(&config, &RunOptions { resume: true, stop_after: None }, &mut Quiet, Some(&mut method(&config))).unwrap().metrics,
    );
    assert_eq!(resumed, reference, "a resumed ShifCon run must repeat the uninterrupted losses");

    // A run checkpointed before method tables moved to the method crate (its state.json has the
    // parsed section at the top level, `"shifcon": {…}`, and no `"methods"`) still resumes exactly.
    let legacy = shifcon_config(&model_dir, &dir.join("legacy"), Some([plan.to, plan.back]));
    train_with(&legacy, &RunOptions { resume: false, stop_after: Some(4) }, &mut Quiet, Some(&mut method(&legacy))).unwrap();
    let state_path = dir.join("legacy/checkpoints/step-000004/state.json");
    let mut state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    let identity = state["config"].as_object_mut().unwrap();
    let mut section = identity.remove("methods").unwrap()["shifcon"].clone();
    assert!(section["parallel"].is_string() && section["vector_sentences"] == 24, "{section}");
    // Settings from before the conventions existed: no conventions, band resampling or earliest
    // start, and `shift_contrastive` naming the in-loss re-centring.
    let old = section.as_object_mut().unwrap();
    for added in ["conventions", "earliest_start", "bootstrap"] {
        assert!(old.remove(added).is_some(), "{added}");
    }
    let recentre = old.remove("recentre").unwrap();
    old.insert("shift_contrastive".into(), recentre);
    identity.insert("shifcon".into(), section);
    std::fs::write(&state_path, serde_json::to_vec_pretty(&state).unwrap()).unwrap();
    let resumed = losses(
        &train_with(&legacy, &RunOptions { resume: true, stop_after: None }, &mut Quiet, Some(&mut method(&legacy))).unwrap().metrics,
    );
    assert_eq!(resumed, reference, "a pre-change ShifCon checkpoint must resume with the same losses");
    // Changed settings are still refused on resume, by name.
    let mut changed = legacy.clone();
    edit_settings(&mut changed, |s| s.pairs_per_batch = 6);
    changed.run.steps = 8;
    let err = train_with(&changed, &RunOptions { resume: true, stop_after: None }, &mut Quiet, Some(&mut method(&changed))).unwrap_err();
    assert!(err.to_string().contains("methods"), "{err}");
}

#[test]
fn bad_shifcon_input_is_refused_with_the_fix() {
    let model = tiny_deep_model(5, 4);
    let tokenizer = tiny_tokenizer();
    // A band outside the model.
    let vectors: BTreeMap<String, Vec<Vec<f32>>> = ["en", "hu"].iter().map(|l| (l.to_string(), vec![vec![0.0; 32]; 5])).collect();
    let err = ShiftPlan::from_site_vectors("en", 2, 9, &vectors, Conventions::Rosetta).unwrap_err();
    assert!(matches!(err, ShifconError::BandOutOfRange { .. }), "{err}");
    assert!(err.to_string().contains("0..=4"), "{err}");
    let texts: BTreeMap<String, Vec<&str>> = [("en".to_string(), vec!["a"; 10]), ("hu".to_string(), vec!["b"; 10])].into();
    let err = ShiftPlan::estimate_blocking(&model, &tokenizer, &texts, "en", [3, 7], Conventions::Rosetta).unwrap_err();
    assert!(err.to_string().contains("outside"), "{err}");
    // The released placement needs a site before the first vector's.
    let err = ShiftPlan::from_site_vectors("en", 0, 3, &vectors, Conventions::Released).unwrap_err();
    assert!(err.to_string().contains("site 1"), "{err}");
    // Too few sentences for a covariance estimate.
    let few: BTreeMap<String, Vec<Matrix>> = ["en", "hu"].iter().map(|l| (l.to_string(), vec![structured(10, 32, 1, 0.0); 5])).collect();
    let err = analyse(&few, &GeometryOptions::default()).unwrap_err();
    assert!(err.to_string().contains("10 sentences") && err.to_string().contains("more parallel sentences"), "{err}");
    // Languages missing from the parallel file.
    let dir = temp_dir("shifcon-bad");
    let parallel = dir.join("parallel.jsonl");
    std::fs::write(&parallel, "{\"en\": \"Hello\", \"de\": \"Hallo\"}\n".repeat(40)).unwrap();
    let mut config = shifcon_config(&dir.join("model"), &dir.join("run"), Some([1, 3]));
    edit_settings(&mut config, |s| s.parallel = parallel.clone());
    let err = ShifconMethod::from_table(&config.methods["shifcon"], &config.base_dir, 0).err().expect("hu is missing");
    assert!(err.to_string().contains("`hu`") && err.to_string().contains("de, en"), "{err}");
    // A band the config orders wrongly is a config error naming the field.
    let mut config = shifcon_config(&dir.join("model"), &dir.join("run"), Some([4, 2]));
    let err = ShifconConfig::from_table(&config.methods["shifcon"], &config.base_dir).unwrap_err().to_string();
    assert!(err.contains("shifcon.band"), "{err}");
    edit_settings(&mut config, |s| {
        s.band = None;
        s.langs = vec!["en".into()];
    });
    let err = ShifconConfig::from_table(&config.methods["shifcon"], &config.base_dir).unwrap_err().to_string();
    assert!(err.contains("shifcon.langs"), "{err}");
    // A method table with no method handed to the trainer, or on several devices, is refused.
    let config = shifcon_config(&dir.join("model"), &dir.join("run"), Some([1, 3]));
    let err = rosetta_train::train(&config, &RunOptions::default(), &mut Quiet).unwrap_err().to_string();
    assert!(err.contains("[shifcon]") && err.contains("no method"), "{err}");
}

/// The training path through the fused WGSL contrastive kernel (its custom backward inside the
/// model's autodiff graph) on the wgpu adapter CI has (lavapipe): two steps, finite losses that
/// agree with the same steps on the CPU reference.
#[test]
fn shifcon_trains_through_the_wgsl_contrastive_kernel() {
    let dir = temp_dir("shifcon-wgpu");
    let model_dir = dir.join("model");
    write_tiny_deep_hf(&model_dir, 11, 6);
    let run = |device: &str| {
        let mut config = shifcon_config(&model_dir, &dir.join(device), Some([2, 4]));
        config.model.devices = vec![device.to_string()];
        config.run.steps = 2;
        config.run.eval_every = 2;
        config.data.eval = None;
        edit_settings(&mut config, |s| s.update_vectors_every = 0);
        train_with(&config, &RunOptions::default(), &mut Quiet, Some(&mut method(&config))).map(|s| losses(&s.metrics))
    };
    // Skipped only when there is no adapter: a training error on one is a failure.
    if rosetta_tests::wgpu_device().is_none() {
        return;
    }
    let gpu = run("wgpu").unwrap();
    let cpu = run("cpu").unwrap();
    assert_eq!(gpu.len(), 2);
    for ((lg, cg), (lc, cc)) in gpu.iter().zip(&cpu) {
        assert!(lg.is_finite() && cg.is_finite());
        assert!((lg - lc).abs() < 1e-3 * lc.abs().max(1.0) && (cg - cc).abs() < 1e-3, "wgpu {lg}/{cg} vs cpu {lc}/{cc}");
    }
}

/// ShifCon under mixed precision: its shifted pass and contrastive term run on the bf16 compute
/// copy (shift vectors cast to the residual's type, captured states returned in f32), and the
/// first step's losses stay within bf16's rounding of the f32 run's.
#[test]
fn shifcon_trains_in_bf16() {
    let dir = temp_dir("shifcon-bf16");
    let model_dir = dir.join("model");
    write_tiny_deep_hf(&model_dir, 13, 6);
    let run = |precision: rosetta_train::precision::TrainPrecision| {
        let mut config = shifcon_config(&model_dir, &dir.join(precision.name()), Some([2, 4]));
        config.run.steps = 2;
        config.data.eval = None;
        config.optim.precision = precision;
        losses(&train_with(&config, &RunOptions::default(), &mut Quiet, Some(&mut method(&config))).unwrap().metrics)
    };
    let reference = run(rosetta_train::precision::TrainPrecision::F32);
    let bf16 = run(rosetta_train::precision::TrainPrecision::Bf16);
    assert_eq!(bf16.len(), reference.len());
    for ((loss, contrastive), (want, want_contrastive)) in bf16.iter().zip(&reference) {
        assert!(loss.is_finite() && (loss - want).abs() <= 0.05 * want.abs(), "loss {loss} vs f32 {want}");
        assert!(
            (contrastive - want_contrastive).abs() <= 0.05 * want_contrastive.abs().max(0.1),
            "contrastive {contrastive} vs {want_contrastive}"
        );
    }
}
