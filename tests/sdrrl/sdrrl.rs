//! SDRRL's transfer-set build on a tiny random model: every kind in the configured shares with
//! its provenance, generation that resumes where it stopped (also after a torn line), the model's
//! own few-shot translations, and the bad inputs the issue names.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and fixtures: a panic is how they report")]

use std::collections::BTreeMap;
use std::path::Path;

use rosetta_data::instruction::read_instructions;
use rosetta_data::{BadLines, InstructionRecord, ParallelCorpus};
use rosetta_sdrrl::filters::FilterConfig;
use rosetta_sdrrl::langid::LanguageId;
use rosetta_sdrrl::{BuildInputs, Interrupt, Kind, SdrrlConfig, SdrrlError, Shares, TransferRecord, build};
use rosetta_tests::fixtures::{tiny_model, tiny_tokenizer};
use rosetta_tests::temp_dir;

fn instructions(n: usize) -> Vec<InstructionRecord> {
    (0..n)
        .map(|i| InstructionRecord {
            lang: "en".into(),
            instruction: format!("Name thing {i}."),
            response: format!("Thing {i} is red.\nIt is small."),
            id: Some(format!("q{i}")),
            source: Some("test".into()),
        })
        .collect()
}

fn parallel(dir: &Path) -> ParallelCorpus {
    let path = dir.join("parallel.jsonl");
    let pairs = [
        ("the red house is here", "a piros ház itt van"),
        ("the red dog is small", "a piros kutya kicsi"),
        ("the small house is red", "a kicsi ház piros"),
        ("a thing is small", "egy dolog kicsi"),
        ("the thing is red", "a dolog piros"),
        ("name the red thing now", "nevezd meg a piros dolgot most"),
    ];
    let text: String = pairs
        .iter()
        .cycle()
        .take(24)
        .enumerate()
        .map(|(i, (e, h))| format!("{{\"id\": \"p{i}\", \"en\": \"{e}\", \"hu\": \"{h}\"}}\n"))
        .collect();
    std::fs::write(&path, text).unwrap();
    ParallelCorpus::read(&path, BadLines::Fail).unwrap().0
}

/// Filters a random model cannot pass are relaxed; the tests are about the mechanics.
fn config() -> SdrrlConfig {
    let mut config = SdrrlConfig::new("en", &["hu".to_string()]);
    config.max_new_tokens = 6;
    config.translate_max_tokens = 6;
    config.shots = 1;
    config.batch_size = 3;
    config.code_switch_rate = 1.0;
    config.filters = FilterConfig { max_repeated_trigrams: 1.0, drop_unfinished: false, trim_unfinished: false, check_language: false };
    config
}

fn read(path: &Path) -> Vec<TransferRecord> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_string).collect()
}

#[test]
fn the_transfer_set_has_every_kind_in_its_share_with_provenance() {
    let dir = temp_dir("sdrrl-kinds");
    let (model, tokenizer) = (tiny_model(1), tiny_tokenizer());
    let parallel = parallel(&dir);
    let langid = LanguageId::train([("en", "the red house"), ("hu", "a piros ház")]);
    let records = instructions(9);
    let inputs = BuildInputs { instructions: &records, parallel: &parallel, langid: &langid, model_name: "tiny".into() };
    let mut config = config();
    config.shares = Shares {
        source: 2.0,
        translated: 1.0,
        target_instruction: 1.0,
        source_instruction: 1.0,
        code_switch: 1.0,
        completion: 1.0,
        parallel: 1.0,
    };
    let stats = build(&model, &tokenizer, &inputs, &config, &dir.join("out"), Interrupt::default(), &mut |_, _, _| {}).unwrap();
    let written = read(&stats.transfer);
    let mut counts: BTreeMap<Kind, usize> = BTreeMap::new();
    for r in &written {
        *counts.entry(r.kind).or_default() += 1;
        assert_eq!(r.source, format!("sdrrl/{}", r.kind.name()));
        let p = &r.provenance;
        assert!(p.get("instruction_id").or(p.get("parallel_id")).is_some(), "{r:?} has no provenance");
        if r.kind != Kind::Source {
            assert_eq!(r.lang, "hu");
        }
    }
    assert_eq!(counts.len(), 7 - stats.missing.len(), "every kind with candidates present: {counts:?}");
    assert!(stats.missing.is_empty() || stats.missing == ["completion"], "{:?}", stats.missing);
    // Shares 2:1:…:1 of the total the scarcest kind allows.
    let unit = counts[&Kind::Translated];
    assert!(unit > 0);
    for (kind, n) in &counts {
        assert_eq!(*n, if *kind == Kind::Source { 2 * unit } else { unit }, "{kind:?}: {counts:?}");
    }
    // The trainer's SFT reader takes the file as it is.
    let (sft, _) = read_instructions(&stats.transfer, None, BadLines::Fail).unwrap();
    assert_eq!(sft.len(), written.len());
    // The model's own translations carry their origin.
    let translated = written.iter().find(|r| r.kind == Kind::Translated).unwrap();
    assert_eq!(translated.provenance["translation"], "model (few-shot)");
    assert_eq!(translated.provenance["answer"], "self");
}

#[test]
fn generation_resumes_where_it_stopped() {
    let dir = temp_dir("sdrrl-resume");
    let (model, tokenizer) = (tiny_model(2), tiny_tokenizer());
    let parallel = parallel(&dir);
    let langid = LanguageId::train([("en", "the red house"), ("hu", "a piros ház")]);
    let records = instructions(7);
    let inputs = BuildInputs { instructions: &records, parallel: &parallel, langid: &langid, model_name: "tiny".into() };
    let config = config();
    let out = dir.join("out");
    let err = build(&model, &tokenizer, &inputs, &config, &out, Interrupt { after_batches: Some(1) }, &mut |_, _, _| {}).unwrap_err();
    assert!(matches!(err, SdrrlError::Interrupted { stage: "answers" }), "{err}");
    let first = lines(&out.join("answers.jsonl"));
    assert_eq!(first.len(), 3, "one batch of three was kept");
    // A crash in the middle of a write leaves a torn line: it is dropped and redone.
    std::fs::write(out.join("answers.jsonl"), format!("{}\n{{\"id\": \"q6/", first.join("\n"))).unwrap();
    let mut seen = Vec::new();
    let stats =
        build(&model, &tokenizer, &inputs, &config, &out, Interrupt::default(), &mut |stage, done, _| seen.push((stage.to_string(), done)))
            .unwrap();
    assert_eq!(stats.generation["answers"].prompts, 4, "only the four missing answers were generated");
    assert_eq!(seen.iter().find(|(s, _)| s == "answers").map(|(_, d)| *d), Some(3), "progress starts at what was done");
    let all = lines(&out.join("answers.jsonl"));
    assert_eq!(all.len(), 7);
    assert_eq!(all[..3], first[..], "earlier answers are kept as they were");
    // A second run generates nothing and writes the same transfer set.
    let before = std::fs::read_to_string(&stats.transfer).unwrap();
    let again = build(&model, &tokenizer, &inputs, &config, &out, Interrupt::default(), &mut |_, _, _| {}).unwrap();
    assert!(again.generation.values().all(|g| g.prompts == 0));
    assert_eq!(std::fs::read_to_string(&again.transfer).unwrap(), before);
}

#[test]
fn bad_input_is_an_error_or_a_logged_skip() {
    let dir = temp_dir("sdrrl-bad");
    let (model, tokenizer) = (tiny_model(3), tiny_tokenizer());
    let parallel = parallel(&dir);
    let langid = LanguageId::train([("en", "the red house"), ("hu", "a piros ház")]);
    // Missing fields in the instruction file: the line is named.
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "{\"instruction\": \"Hi\", \"response\": \"Hello\"}\n{\"instruction\": \"Only a question\"}\n").unwrap();
    let err = read_instructions(&bad, Some("en"), BadLines::Fail).unwrap_err().to_string();
    assert!(err.contains("bad.jsonl") && err.contains(":2") && err.contains("response"), "{err}");
    // A target the parallel data lacks.
    let records = instructions(4);
    let inputs = BuildInputs { instructions: &records, parallel: &parallel, langid: &langid, model_name: "tiny".into() };
    let mut config = config();
    config.targets = vec!["sw".into()];
    let err =
        build(&model, &tokenizer, &inputs, &config, &dir.join("sw"), Interrupt::default(), &mut |_, _, _| {}).unwrap_err().to_string();
    assert!(err.contains("`sw`") && err.contains("en, hu"), "{err}");
    // Generations that never stop are skipped by reason; with nothing left, an error says why.
    let mut config = self::config();
    config.filters.drop_unfinished = true;
    config.shares = Shares {
        source: 1.0,
        translated: 0.0,
        target_instruction: 0.0,
        source_instruction: 0.0,
        code_switch: 0.0,
        completion: 0.0,
        parallel: 0.0,
    };
    let err = build(&model, &tokenizer, &inputs, &config, &dir.join("unfinished"), Interrupt::default(), &mut |_, _, _| {}).unwrap_err();
    assert!(matches!(err, SdrrlError::Empty { .. }), "{err}");
    assert!(err.to_string().contains("answer: 4 Unfinished"), "{err}");
    // Out-of-range settings.
    let mut config = self::config();
    config.completion_prefix = 1.0;
    assert!(config.validate().unwrap_err().to_string().contains("completion_prefix"));
}
