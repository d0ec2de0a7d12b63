//! `rosetta vocab`, `features` and `prune` as a person runs them on a tiny model: the files they
//! write load back, and bad settings fail with a message that says what to change.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and fixtures: a panic is how they report")]

use crate::common;

use common::{assert_fails_cleanly, rosetta, text};
use rosetta_model::Checkpoint;
use rosetta_prune::masks::read_masks;
use rosetta_tests::fixtures::{write_tiny_deep_hf, write_tiny_hf};
use rosetta_tests::{read_json, temp_dir};

#[test]
fn vocab_extend_and_report_on_a_tiny_model() {
    let dir = temp_dir("cli-vocab");
    let model = dir.join("model");
    write_tiny_hf(&model, 5);
    let extended = dir.join("extended");
    let out = rosetta(&[
        "vocab",
        "extend",
        model.to_str().unwrap(),
        "--lang",
        "hu",
        "--new-tokens",
        "60",
        "--init",
        "focus",
        "--out",
        extended.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("60 new hu tokens"), "{}", text(&out.stdout));
    let checkpoint = Checkpoint::open(&extended, None).unwrap();
    assert_eq!(checkpoint.config.vocab_size, 261 + 60);
    let record = &checkpoint.extras.as_ref().unwrap()["vocab_extension"];
    assert_eq!(record["new_token_ids"].as_array().unwrap().len(), 60);
    assert_eq!(record["init"], "focus");

    let report = dir.join("report");
    let out = rosetta(&[
        "vocab",
        "report",
        model.to_str().unwrap(),
        "--extended",
        extended.to_str().unwrap(),
        "--out",
        report.to_str().unwrap(),
        "--score",
        &format!("base={}", model.display()),
        "--score",
        &format!("extended={}", extended.display()),
        "--docs-per-lang",
        "3",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json = read_json(&report.join("report.json"));
    let hu = &json["fertility"]["hu"];
    // Both numbers must be there: `None < Some(_)` would pass on a missing one.
    let fertility = |when: &str| hu[when]["tokens_per_char"].as_f64().unwrap_or_else(|| panic!("no {when} fertility in {hu}"));
    assert!(fertility("after") < fertility("before"));
    assert!(json["bits_per_char"]["extended"]["hu"]["bits_per_char"].as_f64().unwrap() > 0.0);
    assert!(std::fs::read_to_string(report.join("fertility.svg")).unwrap().starts_with("<svg"));

    // Too many tokens for a tiny corpus, and an unknown mode.
    let small = dir.join("small.txt");
    std::fs::write(&small, "alma körte szilva alma körte\n").unwrap();
    let out = rosetta(&[
        "vocab",
        "extend",
        model.to_str().unwrap(),
        "--lang",
        "xx",
        "--text",
        small.to_str().unwrap(),
        "--new-tokens",
        "500",
        "--out",
        dir.join("never").to_str().unwrap(),
    ]);
    assert_fails_cleanly(&out, &["--new-tokens"]);
    assert!(!dir.join("never").exists(), "a failed extension left an output directory");
    let out = rosetta(&["vocab", "extend", model.to_str().unwrap(), "--lang", "hu", "--mode", "grow", "--out", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn features_and_prune_on_a_tiny_model() {
    let dir = temp_dir("cli-prune");
    let model = dir.join("model");
    write_tiny_hf(&model, 6);
    let m = model.to_str().unwrap();
    // Short prompts: the tiny byte-level model has a 512-token context.
    let calib = ["--langs", "sw", "--shots", "0", "--prompts", "6", "--batch-size", "4", "--prompt-chars", "200"];

    let features = dir.join("features");
    let mut args = vec!["features", m, "--calib", "translation,monolingual", "--out", features.to_str().unwrap(), "--max-tokens", "512"];
    args.extend(calib);
    let out = rosetta(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json = read_json(&features.join("features.json"));
    assert_eq!(json["settings"][0]["norms"].as_array().unwrap().len(), 2, "one row of norms per layer");
    assert_eq!(json["settings"][0]["norms"][0].as_array().unwrap().len(), 32);
    assert!(json["overlap"]["translation-vs-monolingual@0.05"].as_array().is_some());

    let pruned = dir.join("pruned");
    let mut args = vec!["prune", m, "--method", "wanda", "--calib", "translation", "--sparsity", "0.5", "--out", pruned.to_str().unwrap()];
    args.extend(calib);
    let out = rosetta(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let masks = read_masks(&pruned.join("masks.safetensors")).unwrap();
    assert_eq!(masks.len(), 2 * 7);
    let (rows, cols, keep) = &masks["model.layers.0.mlp.down_proj.weight.keep"];
    assert_eq!((*rows, *cols), (32, 48));
    assert_eq!(keep.iter().filter(|k| **k).count(), 32 * 24);
    let checkpoint = Checkpoint::open(&pruned, None).unwrap();
    assert_eq!(checkpoint.extras.as_ref().unwrap()["pruning"]["method"], "wanda");

    let out = rosetta(&["prune", m, "--sparsity", "1.0", "--out", dir.join("x").to_str().unwrap()]);
    assert_fails_cleanly(&out, &["[0, 1)"]);
    let out = rosetta(&["prune", m, "--nm", "4:4", "--out", dir.join("x").to_str().unwrap()]);
    assert_fails_cleanly(&out, &["0 < N < M"]);
    let out = rosetta(&["prune", m, "--prompts", "0", "--out", dir.join("x").to_str().unwrap()]);
    assert_fails_cleanly(&out, &["--prompts"]);
    // Monolingual documents of ~1200 characters are longer than a 64-token limit.
    let out =
        rosetta(&["prune", m, "--calib", "monolingual", "--langs", "hu", "--max-tokens", "64", "--out", dir.join("x").to_str().unwrap()]);
    assert_fails_cleanly(&out, &["longer than the 64-token context"]);
    let out = rosetta(&["prune", m, "--max-tokens", "100000", "--out", dir.join("x").to_str().unwrap()]);
    assert_fails_cleanly(&out, &["exceeds the model's context"]);
    assert!(!dir.join("x").exists());
}

#[test]
fn geometry_and_shift_steering_on_a_tiny_model() {
    let dir = temp_dir("cli-geometry");
    let model = dir.join("model");
    write_tiny_deep_hf(&model, 6, 6);
    let out_dir = dir.join("geometry");
    let out =
        rosetta(&["geometry", model.to_str().unwrap(), "--langs", "en,hu,de", "--sentences", "40", "--out", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("band (β = 0.3, from site 2 on)"), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("resamples"), "{}", text(&out.stdout));
    let geometry = read_json(&out_dir.join("geometry.json"));
    let (to, back) = (geometry["band"]["to"].as_u64().unwrap(), geometry["band"]["back"].as_u64().unwrap());
    assert!(to >= 1 && back <= 6 && to < back);
    assert_eq!(geometry["sites"].as_array().unwrap().len(), 7);
    assert_eq!(geometry["vectors"]["hu"].as_array().unwrap().len(), 7);
    assert!(geometry["band"]["stability"]["frequency"].as_f64().unwrap() > 0.0);
    assert_eq!(geometry["conventions"], "rosetta");
    for svg in ["distance.svg", "alignment.svg", "pca.svg", "band.svg"] {
        assert!(std::fs::read_to_string(out_dir.join(svg)).unwrap().starts_with("<svg"), "{svg}");
    }
    // The CLI and the lab draw the same chart for the same geometry, shading the band's sites
    // to..=back-1 (each ±½), no more and no fewer.
    let parsed: rosetta_shifcon::Geometry = serde_json::from_value(geometry.clone()).unwrap();
    let drawn_by_cli = std::fs::read_to_string(out_dir.join("distance.svg")).unwrap();
    assert_eq!(drawn_by_cli, rosetta_lab::shift::distance_chart(&parsed), "the lab's distance chart differs from the CLI's");
    assert_eq!(rosetta_shifcon::charts::band_span(&parsed.band), (to as f64 - 0.5, back as f64 - 0.5));
    assert!(drawn_by_cli.contains(&format!("band {to}..{back}")));

    // Shift steering with the vectors just measured, and with vectors estimated on the fly.
    let spec = format!("hu→en@{to}..{back}");
    let scores = dir.join("scores.json");
    let out = rosetta(&[
        "score",
        model.to_str().unwrap(),
        "--langs",
        "hu",
        "--max-sentences",
        "6",
        "--shift",
        &spec,
        "--shift-vectors",
        out_dir.join("geometry.json").to_str().unwrap(),
        "--json",
        scores.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json = read_json(&scores);
    assert_eq!(json["shift"]["to"].as_u64(), Some(to));
    let shifted = json["languages"][0]["bits_per_char"].as_f64().unwrap();
    let out = rosetta(&["score", model.to_str().unwrap(), "--langs", "hu", "--max-sentences", "6", "--json", scores.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plain = read_json(&scores)["languages"][0]["bits_per_char"].as_f64().unwrap();
    assert!((shifted - plain).abs() > 1e-6, "the shift changed nothing ({shifted} vs {plain})");
    let out = rosetta(&[
        "generate",
        model.to_str().unwrap(),
        "-p",
        "Szia",
        "--max-new-tokens",
        "4",
        "--shift",
        "hu->en@1..3",
        "--shift-sentences",
        "16",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("shifting `hu` toward `en` at site 1, back at site 3"), "{}", text(&out.stderr));
    // The released conventions: vectors measured at 2 and 4, added at 1 and 3.
    let out = rosetta(&[
        "score",
        model.to_str().unwrap(),
        "--langs",
        "hu",
        "--max-sentences",
        "4",
        "--shift",
        "hu->en@2..4",
        "--shift-sentences",
        "16",
        "--shift-conventions",
        "released",
        "--json",
        scores.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json = read_json(&scores);
    assert_eq!(json["shift"]["added_at"], serde_json::json!([1, 3]));
    assert_eq!(json["shift"]["conventions"], "released");
    // Vectors from a geometry made under other conventions are refused, with the fix.
    let out = rosetta(&[
        "score",
        model.to_str().unwrap(),
        "--shift",
        &spec,
        "--shift-vectors",
        out_dir.join("geometry.json").to_str().unwrap(),
        "--shift-conventions",
        "released",
    ]);
    assert_fails_cleanly(&out, &["rosetta conventions", "--shift-conventions rosetta"]);

    // Bad input: a band past the last layer, a language the corpus lacks, a malformed spec.
    let out = rosetta(&["score", model.to_str().unwrap(), "--langs", "hu", "--shift", "hu→en@2..9", "--max-sentences", "4"]);
    assert_fails_cleanly(&out, &["0..=6"]);
    let out = rosetta(&["geometry", model.to_str().unwrap(), "--langs", "en,xx", "--out", dir.join("never").to_str().unwrap()]);
    assert_fails_cleanly(&out, &["`xx`"]);
    let out = rosetta(&["score", model.to_str().unwrap(), "--shift", "hu@2..4"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn sdrrl_build_train_and_eval_on_a_tiny_model() {
    let dir = temp_dir("cli-sdrrl");
    let model = dir.join("model");
    write_tiny_hf(&model, 8);
    // A random model's text passes no language check: relax the filters, keep prompts short.
    let config = dir.join("sdrrl.toml");
    std::fs::write(
        &config,
        "targets = [\"hu\"]\nmax_new_tokens = 6\ntranslate_max_tokens = 6\nshots = 1\nbatch_size = 4\n\
         [filters]\ncheck_language = false\ndrop_unfinished = false\nmax_repeated_trigrams = 1.0\n",
    )
    .unwrap();
    let parallel = dir.join("parallel.jsonl");
    let pairs: String = (0..20)
        .map(|i| format!("{{\"id\": \"p{i}\", \"en\": \"the red house {i} is here\", \"hu\": \"a piros ház {i} itt van\"}}\n"))
        .collect();
    std::fs::write(&parallel, pairs).unwrap();
    let build = dir.join("build");
    let out = rosetta(&[
        "sdrrl",
        "build",
        model.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--max-instructions",
        "6",
        "--parallel",
        parallel.to_str().unwrap(),
        "--out",
        build.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("6 instructions") && stdout.contains("code_switch"), "{stdout}");
    assert!(stdout.contains("answers: 6 prompts"), "{stdout}");
    let stats = read_json(&build.join("stats.json"));
    assert!(stats["stats"]["written"]["source"].as_u64().unwrap() > 0);

    let run = dir.join("run");
    let out = rosetta(&[
        "sdrrl",
        "train",
        "--transfer",
        build.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--steps",
        "2",
        "--seq-len",
        "64",
        "--batch-size",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(run.join("final/config.json").exists());

    let report = dir.join("eval");
    let models = format!("base={},sdrrl={}", model.display(), run.join("final").display());
    let out = rosetta(&["sdrrl", "eval", "--models", &models, "--max-items", "3", "--out", report.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let eval = read_json(&report.join("eval.json"));
    for name in ["base", "sdrrl"] {
        let m = &eval["models"][name];
        assert!(m["en_answers"].as_f64().unwrap() < 0.0 && m["hu_translation"].as_f64().unwrap() < 0.0, "{m}");
    }

    // A target the parallel data lacks fails cleanly, naming it.
    let out = rosetta(&[
        "sdrrl",
        "build",
        model.to_str().unwrap(),
        "--targets",
        "sw",
        "--parallel",
        parallel.to_str().unwrap(),
        "--out",
        dir.join("never").to_str().unwrap(),
    ]);
    assert_fails_cleanly(&out, &["`sw`"]);
}
