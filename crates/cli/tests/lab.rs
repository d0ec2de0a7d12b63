//! `rosetta lab --no-serve` as a person runs it: the static site it assembles (page, model,
//! manifest, exports) reads back, and bad input fails with a message naming the file. The page
//! itself runs in `scripts/test-lab.sh` (headless Chromium).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and fixtures: a panic is how they report")]

use crate::common;

use common::{assert_fails_cleanly, rosetta, text};
use rosetta_lab::Manifest;
use rosetta_tests::fixtures::write_tiny_deep_hf;
use rosetta_tests::{read_json, temp_dir};

#[test]
fn lab_assembles_a_static_site_with_the_model_and_the_texts() {
    let dir = temp_dir("cli-lab");
    let model = dir.join("model");
    write_tiny_deep_hf(&model, 3, 4);
    let pkg = dir.join("pkg");
    rosetta_tests::write_stand_in_lab_pkg(&pkg);
    let geometry = rosetta_tests::repo_root().join("reports/shifcon/geometry.json");
    let site = dir.join("site");
    let (m, p, s, g) = (model.to_str().unwrap(), pkg.to_str().unwrap(), site.to_str().unwrap(), geometry.to_str().unwrap());
    let out = rosetta(&[
        "lab",
        "--model",
        m,
        "--pkg",
        p,
        "--out",
        s,
        "--no-serve",
        "--langs",
        "en,hu,de",
        "--rows",
        "20",
        "--max-chars",
        "80",
        "--geometry",
        g,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), s);
    for file in [
        "index.html",
        "static/main.js",
        "static/lab.css",
        "pkg/rosetta_lab_bg.wasm",
        "pkg/rosetta_lab_page_bg.wasm",
        "pkg/rosetta_lab_threads_bg.wasm",
        "static/worker.js",
        "static/thread.js",
        "data/geometry.json",
        "data/model/config.json",
        "data/model/tokenizer.json",
    ] {
        assert!(site.join(file).is_file(), "the site lacks {file}");
    }
    let manifest: Manifest = serde_json::from_value(read_json(&site.join("data/manifest.json"))).unwrap();
    manifest.validate().unwrap();
    assert_eq!(manifest.langs, ["en", "hu", "de"]);
    assert_eq!(manifest.parallel.len(), 20);
    let files = manifest.model.unwrap().files;
    assert!(files.iter().any(|f| f.ends_with(".safetensors")) && files.iter().all(|f| site.join("data").join(f).is_file()), "{files:?}");
    assert_eq!(manifest.exports.geometry.as_deref(), Some("geometry.json"));
    // The page forbids other origins itself, wherever it is hosted.
    assert!(std::fs::read_to_string(site.join("index.html")).unwrap().contains("Content-Security-Policy"));

    // A GGUF model is served under its own file name: the page knows a GGUF by its extension.
    let gguf = dir.join("tiny.Q8_0.gguf");
    std::fs::write(&gguf, rosetta_tests::fixtures::tiny_gguf_q8_0()).unwrap();
    let out =
        rosetta(&["lab", "--model", gguf.to_str().unwrap(), "--pkg", p, "--out", s, "--no-serve", "--langs", "en,hu", "--max-chars", "80"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let manifest: Manifest = serde_json::from_value(read_json(&site.join("data/manifest.json"))).unwrap();
    let served = manifest.model.unwrap();
    assert_eq!(served.name, "tiny.Q8_0");
    assert_eq!(served.files, ["model/tiny.Q8_0.gguf"]);
    assert!(site.join("data/model/tiny.Q8_0.gguf").is_file());

    // Bad input: a missing model, an export that is not one, a file that is not a model.
    let out = rosetta(&["lab", "--model", &format!("{m}-missing"), "--pkg", p, "--out", s, "--no-serve"]);
    assert_fails_cleanly(&out, &["does not exist"]);
    let notes = dir.join("notes.json");
    std::fs::write(&notes, "{\"hello\": 1}").unwrap();
    let out = rosetta(&[
        "lab",
        "--model",
        m,
        "--pkg",
        p,
        "--out",
        s,
        "--no-serve",
        "--langs",
        "en,hu",
        "--max-chars",
        "80",
        "--geometry",
        notes.to_str().unwrap(),
    ]);
    assert_fails_cleanly(&out, &["notes.json", "rosetta geometry"]);
    let out = rosetta(&["lab", "--model", notes.to_str().unwrap(), "--pkg", p, "--out", s, "--no-serve"]);
    assert_fails_cleanly(&out, &["notes.json", "gguf"]);
}
