//! Vocabulary extension end to end: the extended tokenizer round-trips every language, every
//! new token is reachable by the merge process, HF `tokenizers`/transformers encode exactly as
//! Rosetta does and load the resized model, stage 1 trains only the new rows, and bad input is
//! a clear error. On a tiny byte-level model always; on SmolLM2's real tokenizer when the
//! default model is present.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and fixtures: a panic is how they report")]

use std::collections::BTreeMap;

use rosetta_data::corpus::CorpusDir;
use rosetta_data::monolingual::Document;
use rosetta_model::burn::prelude::*;
use rosetta_model::export::{ExportOptions, export_hf};
use rosetta_model::{CausalLm, Checkpoint, TextTokenizer};
use rosetta_tests::fixtures::{tiny_model, tiny_tokenizer};
use rosetta_tests::{default_model, ids, max_abs_diff, python, read_f32_file, read_json, run_python, skip, temp_dir, write_json};
use rosetta_vocab::bpe::BpeTables;
use rosetta_vocab::fertility::fertility;
use rosetta_vocab::{ExtendOptions, Extension, InitMethod, Mode, VocabError};
use serde_json::json;

fn corpus() -> CorpusDir {
    CorpusDir::new(rosetta_tests::repo_root().join("data/corpus"))
}

fn held_out() -> Vec<Document> {
    corpus().read_monolingual_test().unwrap()
}

fn hu_train() -> Vec<String> {
    corpus().read_monolingual_train().unwrap().into_iter().filter(|d| d.lang == "hu").map(|d| d.text).collect()
}

fn options(k: usize, mode: Mode, first_new_id: usize) -> ExtendOptions {
    ExtendOptions { lang: "hu".into(), new_tokens: k, mode, first_new_id: first_new_id as u32, max_rounds: 64 }
}

/// Round trip in every language, and every new token reachable from its own characters.
fn check_properties(base: &TextTokenizer, extended: &TextTokenizer, extension: &Extension) {
    let docs = held_out();
    for doc in &docs {
        let ids = extended.encode(&doc.text, false).unwrap();
        assert_eq!(extended.decode(&ids, false).unwrap(), doc.text, "{} text does not round-trip", doc.lang);
    }
    let ranks = extension.tables.ranks();
    for t in &extension.new_tokens {
        assert_eq!(ranks.segment(&t.token), vec![t.token.clone()], "new token {:?} is unreachable", t.token);
        assert_eq!(extended.token_to_id(&t.token), Some(t.id), "new token {:?} is not a vocabulary entry", t.token);
    }
    // No new token shadows an old one: every base token keeps its id unless replaced.
    let replaced: Vec<u32> = extension.replaced.iter().map(|(id, _)| *id).collect();
    for id in (0..base.vocab_size() as u32).step_by(97) {
        if !replaced.contains(&id) {
            assert_eq!(extended.id_to_token(id), base.id_to_token(id), "base token {id} changed");
        }
    }
}

fn extend_tiny(k: usize, mode: Mode) -> (CausalLm, TextTokenizer, Extension, serde_json::Value) {
    let base = tiny_tokenizer();
    let mut model = tiny_model(3);
    let vocab = model.config().vocab_size;
    let tables = rosetta_vocab::base_tables(&base, vocab).unwrap();
    let extension = rosetta_vocab::plan(&base, &tables, &hu_train(), &options(k, mode, vocab)).unwrap();
    let (tokenizer, record) = rosetta_vocab::apply(&mut model, &base, &extension, InitMethod::Mean, 0).unwrap();
    (model, tokenizer, extension, record)
}

#[test]
fn tiny_extension_round_trips_reaches_every_token_and_cuts_hungarian_tokens() {
    let base = tiny_tokenizer();
    let (model, extended, extension, record) = extend_tiny(120, Mode::Add);
    assert_eq!(model.config().vocab_size, 261 + 120);
    assert_eq!(extension.new_tokens.len(), 120);
    assert_eq!(record["vocab_extension"]["new_token_ids"].as_array().unwrap().len(), 120);
    check_properties(&base, &extended, &extension);
    let before = fertility(base.inner(), &held_out()).unwrap();
    let after = fertility(extended.inner(), &held_out()).unwrap();
    let (b, a) = (before["hu"].tokens_per_char(), after["hu"].tokens_per_char());
    assert!(a < 0.8 * b, "120 Hungarian tokens should cut tokens/char well below {b:.3}, got {a:.3}");
}

#[test]
fn mean_init_is_the_mean_of_the_old_pieces_and_old_rows_are_untouched() {
    let base_model = tiny_model(3);
    let (model, extended, extension, _) = extend_tiny(40, Mode::Add);
    let old = base_model.embed_tokens.weight.val().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    let new = model.embed_tokens.weight.val().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    let d = model.config().hidden_size;
    assert_eq!(&new[..old.len()], &old[..], "existing rows changed");
    let base = tiny_tokenizer();
    for t in extension.new_tokens.iter().take(10) {
        let text = extended.decode(&[t.id], false).unwrap();
        let pieces = base.encode(&text, false).unwrap();
        let mut mean = vec![0.0f32; d];
        for &p in &pieces {
            for j in 0..d {
                mean[j] += old[p as usize * d + j] / pieces.len() as f32;
            }
        }
        let row = &new[t.id as usize * d..(t.id as usize + 1) * d];
        assert!(max_abs_diff(row, &mean) < 1e-6, "{:?}: not the mean of {pieces:?}", t.token);
    }
}

#[test]
fn every_init_gives_finite_distinct_rows() {
    for init in [InitMethod::Mean, InitMethod::Random, InitMethod::Focus] {
        let base = tiny_tokenizer();
        let mut model = tiny_model(3);
        let tables = rosetta_vocab::base_tables(&base, 261).unwrap();
        let extension = rosetta_vocab::plan(&base, &tables, &hu_train(), &options(30, Mode::Add, 261)).unwrap();
        rosetta_vocab::apply(&mut model, &base, &extension, init, 7).unwrap();
        let rows = model.embed_tokens.weight.val().slice([261..291, 0..32]).into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        assert!(rows.iter().all(|v| v.is_finite()), "{init:?} produced non-finite rows");
        assert_ne!(&rows[..32], &rows[32..64], "{init:?}: two new tokens got the same row");
    }
}

#[test]
fn replace_mode_keeps_the_size_and_swaps_low_priority_tokens() {
    // The tiny tokenizer has only two merges to give up: its `th` and ` t`.
    let base = tiny_tokenizer();
    let (model, extended, extension, _) = extend_tiny(2, Mode::Replace);
    assert_eq!(model.config().vocab_size, 261);
    let replaced: Vec<&str> = extension.replaced.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(replaced, vec!["th", "Ġt"]);
    for (id, token) in &extension.replaced {
        assert_ne!(extended.id_to_token(*id).as_deref(), Some(token.as_str()));
    }
    check_properties(&base, &extended, &extension);
    // Asking for more than can be removed is an error naming the way out.
    let tables = rosetta_vocab::base_tables(&base, 261).unwrap();
    let err = rosetta_vocab::plan(&base, &tables, &hu_train(), &options(3, Mode::Replace, 261)).unwrap_err().to_string();
    assert!(err.contains("`add` mode"), "{err}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let base = tiny_tokenizer();
    let tables = rosetta_vocab::base_tables(&base, 261).unwrap();
    // K larger than a tiny corpus supports.
    let small = vec!["alma alma körte körte".to_string(); 3];
    let err = rosetta_vocab::plan(&base, &tables, &small, &options(500, Mode::Add, 261)).unwrap_err();
    assert!(matches!(err, VocabError::NotEnoughTokens { requested: 500, .. }), "{err}");
    assert!(err.to_string().contains("fewer new tokens"), "{err}");
    // An empty corpus.
    assert!(rosetta_vocab::plan(&base, &tables, &[], &options(5, Mode::Add, 261)).is_err());
    // A tokenizer that cannot be extended, by name.
    let unigram = json!({"model": {"type": "WordPiece", "vocab": {"a": 0}}});
    let err = BpeTables::from_json(unigram, "bert/tokenizer.json").unwrap_err().to_string();
    assert!(err.contains("WordPiece") && err.contains("bert/tokenizer.json"), "{err}");
    // A tokenizer with more ids than the model has rows.
    let err = rosetta_vocab::base_tables(&base, 200).unwrap_err().to_string();
    assert!(err.contains("do not match") && err.contains("200"), "{err}");
    // Unknown mode/init strings.
    assert!("grow".parse::<Mode>().is_err() && "zeros".parse::<InitMethod>().is_err());
}

#[test]
fn stage_one_trains_only_the_new_rows_named_in_rosetta_json() {
    use rosetta_train::config::{FreezeSection, Trainable};
    let (model, tokenizer, _, record) = extend_tiny(30, Mode::Add);
    let dir = temp_dir("vocab-stage1");
    let extended = dir.join("extended");
    let options = ExportOptions { overwrite: true, extras: Some(record.clone()), ..Default::default() };
    export_hf(&model, &tokenizer, &extended, &options).unwrap();

    let mut config = rosetta_tests::fixtures::tiny_train_config(&extended, &dir.join("run"));
    config.freeze = FreezeSection { trainable: Trainable::NewEmbeddingRows, new_rows_from: None };
    config.optim.lr = 1e-2;
    config.run.export = true;
    let summary = rosetta_train::train(&config, &Default::default(), &mut rosetta_train::Quiet).unwrap();
    let trained = Checkpoint::open(summary.final_model.as_ref().unwrap(), None).unwrap();
    assert_eq!(
        trained.extras.as_ref().unwrap()["vocab_extension"]["new_token_ids"],
        record["vocab_extension"]["new_token_ids"],
        "the trained export lost the extension record"
    );
    let after = trained.load(&Device::flex()).unwrap();
    let weights = |m: &CausalLm| m.embed_tokens.weight.val().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    let (w0, w1) = (weights(&model), weights(&after));
    let d = model.config().hidden_size;
    assert_eq!(&w0[..261 * d], &w1[..261 * d], "frozen rows moved");
    assert!(max_abs_diff(&w0[261 * d..], &w1[261 * d..]) > 0.0, "new rows did not train");
    let layer = |m: &CausalLm| {
        m.weight(rosetta_model::LinearId::new(0, rosetta_model::LinearKind::UpProj))
            .unwrap()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap()
    };
    assert_eq!(layer(&model), layer(&after), "stage 1 changed a transformer weight");
}

#[test]
fn hf_tokenizers_and_transformers_agree_with_rosetta_on_the_extended_model() {
    let Some(python) = python() else {
        return skip("no Python reference venv (run scripts/setup-python.sh)");
    };
    let (model, tokenizer, extension, record) = extend_tiny(80, Mode::Add);
    let dir = temp_dir("vocab-hf");
    let exported = dir.join("extended");
    let options = ExportOptions { overwrite: true, extras: Some(record), ..Default::default() };
    export_hf(&model, &tokenizer, &exported, &options).unwrap();

    let mut texts: Vec<String> = Vec::new();
    let mut per_lang: BTreeMap<String, usize> = BTreeMap::new();
    for d in held_out() {
        let n = per_lang.entry(d.lang.clone()).or_default();
        if *n < 15 {
            *n += 1;
            texts.push(d.text);
        }
    }
    let request = dir.join("texts.json");
    write_json(&request, &json!({"texts": texts}));
    let answer = dir.join("ids.json");
    run_python(&python, "tokenizer_ids.py", &[exported.to_str().unwrap(), request.to_str().unwrap(), answer.to_str().unwrap()]);
    let theirs = read_json(&answer);
    let mut used_new = 0;
    for (i, text) in texts.iter().enumerate() {
        let ours = tokenizer.encode(text, false).unwrap();
        assert_eq!(ids(&theirs["tokenizers"][i]), ours, "HF tokenizers encodes text {i} differently");
        assert_eq!(ids(&theirs["transformers"][i]), ours, "transformers encodes text {i} differently");
        assert_eq!(theirs["decoded"][i].as_str().unwrap(), text);
        used_new += ours.iter().filter(|id| extension.new_tokens.iter().any(|t| t.id == **id)).count();
    }
    assert!(used_new > 100, "held-out text used only {used_new} new tokens");
    assert_eq!(theirs["vocab_size"].as_u64(), Some(261 + 80));
    assert_eq!(theirs["config_vocab_size"].as_u64(), Some(261 + 80));

    // And the resized model computes the same logits in transformers, new tokens included.
    let hu = texts.iter().find(|t| t.contains("ő") || t.contains("á")).unwrap();
    let ours_ids = tokenizer.encode(hu, false).unwrap();
    let request = dir.join("logits.json");
    write_json(&request, &json!({"inputs": [ours_ids]}));
    let out = dir.join("logits");
    run_python(&python, "hf_logits.py", &[exported.to_str().unwrap(), request.to_str().unwrap(), out.to_str().unwrap()]);
    let batch = rosetta_model::TokenBatch::single(&ours_ids).unwrap();
    let ours = model.forward(&batch).into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    let delta = max_abs_diff(&ours, &read_f32_file(&out.join("logits_0.f32")));
    assert!(delta < 1e-4, "extended model max |Δlogit| vs transformers = {delta:e}");
}

#[test]
fn smollm2_extension_round_trips_and_cuts_hungarian_fertility() {
    let Some(path) = default_model() else {
        return skip("the default model is not fetched (run scripts/fetch-model.sh)");
    };
    let checkpoint = Checkpoint::open(&path, None).unwrap();
    let base = checkpoint.tokenizer.clone();
    let vocab = checkpoint.config.vocab_size;
    let tables = rosetta_vocab::base_tables(&base, vocab).unwrap();
    for mode in [Mode::Add, Mode::Replace] {
        let extension = rosetta_vocab::plan(&base, &tables, &hu_train(), &options(300, mode, vocab)).unwrap();
        let extended = base.with_inner(extension.tokenizer().unwrap());
        check_properties(&base, &extended, &extension);
        let before = fertility(base.inner(), &held_out()).unwrap();
        let after = fertility(extended.inner(), &held_out()).unwrap();
        let (b, a) = (before["hu"].tokens_per_char(), after["hu"].tokens_per_char());
        assert!(a < 0.9 * b, "{mode:?}: 300 tokens should cut Hungarian tokens/char by >10%: {b:.4} → {a:.4}");
        let (eb, ea) = (before["en"].tokens_per_char(), after["en"].tokens_per_char());
        assert!((ea - eb).abs() / eb < 0.02, "{mode:?}: English tokens/char moved {eb:.4} → {ea:.4}");
        eprintln!("SmolLM2 {mode:?} +300: hu tokens/char {b:.4} → {a:.4}; en {eb:.4} → {ea:.4}");
    }
}
