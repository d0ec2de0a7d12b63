//! The `rosetta` binary end to end: commands a person runs, and what they see when the input is
//! bad (exit code 1, a message naming the file, never a panic).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and fixtures: a panic is how they report")]

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{assert_fails_cleanly, rosetta, text};

use rosetta_tests::fixtures::{tiny_gguf, write_tiny_deep_hf, write_tiny_hf};
use rosetta_tests::{default_model, skip, temp_dir};

fn parallel_fixture(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("parallel.jsonl");
    std::fs::write(
        &path,
        concat!(
            "{\"id\": \"1\", \"en\": \"the cat sat\", \"hu\": \"a macska ült\", \"sw\": \"paka aliketi\"}\n",
            "{\"id\": \"2\", \"en\": \"the dog ran\", \"hu\": \"a kutya futott\"}\n",
            "{\"id\": \"3\", \"en\": \"then the sun rose\", \"hu\": \"aztán felkelt a nap\", \"sw\": \"kisha jua likachomoza\"}\n",
        ),
    )
    .unwrap();
    path
}

#[test]
fn info_generate_score_export_on_a_tiny_model() {
    let dir = temp_dir("cli-tiny");
    let model = dir.join("model");
    write_tiny_hf(&model, 3);
    let model_arg = model.to_str().unwrap();

    let info = rosetta(&["info", model_arg]);
    assert!(info.status.success(), "{}", text(&info.stderr));
    assert!(text(&info.stdout).contains("2 layers, hidden 32"), "{}", text(&info.stdout));

    let generated = rosetta(&["generate", model_arg, "--prompt", "the", "--max-new-tokens", "5"]);
    assert!(generated.status.success(), "{}", text(&generated.stderr));
    assert!(text(&generated.stderr).contains("5 new tokens"), "{}", text(&generated.stderr));

    let parallel = parallel_fixture(&dir);
    let (json, svg) = (dir.join("score.json"), dir.join("score.svg"));
    let scored = rosetta(&[
        "score",
        model_arg,
        "--parallel",
        parallel.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(scored.status.success(), "{}", text(&scored.stderr));
    let table = text(&scored.stdout);
    assert!(table.contains("bits/char") && table.contains("\nhu ") && table.contains("\nsw "), "{table}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let langs = report["languages"].as_array().unwrap();
    assert_eq!(langs.len(), 3);
    let en = langs.iter().find(|l| l["lang"] == "en").unwrap();
    assert!((en["gap"].as_f64().unwrap() - 1.0).abs() < 1e-9, "English compared with itself: {en}");
    let sw = langs.iter().find(|l| l["lang"] == "sw").unwrap();
    assert_eq!(sw["sentences"], 2);
    assert!(sw["bits_per_char"].as_f64().unwrap() > 0.0);
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));

    let exported = dir.join("exported");
    let out = rosetta(&["export", model_arg, "--out", exported.to_str().unwrap(), "--dtype", "bf16"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let again = rosetta(&["info", exported.to_str().unwrap(), "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(info["config"]["torch_dtype"], "bfloat16");
    // Exporting onto an existing directory needs --overwrite; nothing is replaced without it.
    let refused = rosetta(&["export", model_arg, "--out", exported.to_str().unwrap()]);
    assert_fails_cleanly(&refused, &["exported", "already exists", "--overwrite"]);
}

#[test]
fn bad_models_fail_cleanly() {
    let dir = temp_dir("cli-bad");
    let truncated = dir.join("cut.gguf");
    let bytes = tiny_gguf(None);
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert_fails_cleanly(&rosetta(&["info", truncated.to_str().unwrap()]), &["cut.gguf", "truncated"]);

    let quant = dir.join("quant.gguf");
    std::fs::write(&quant, tiny_gguf(Some(("blk.1.attn_k.weight", 39)))).unwrap();
    assert_fails_cleanly(
        &rosetta(&["generate", quant.to_str().unwrap(), "--prompt", "x"]),
        &["quant.gguf", "blk.1.attn_k.weight", "MXFP4"],
    );

    let model = dir.join("model");
    write_tiny_hf(&model, 0);
    std::fs::write(model.join("tokenizer.json"), "not json").unwrap();
    assert_fails_cleanly(&rosetta(&["info", model.to_str().unwrap()]), &["tokenizer.json"]);
}

#[test]
fn bad_arguments_fail_cleanly() {
    let dir = temp_dir("cli-args");
    let model = dir.join("model");
    write_tiny_hf(&model, 0);
    let m = model.to_str().unwrap();
    let parallel = parallel_fixture(&dir);
    let p = parallel.to_str().unwrap();

    let bad_device = rosetta(&["info", m, "--device", "tpu"]);
    assert_eq!(bad_device.status.code(), Some(2), "{}", text(&bad_device.stderr));
    assert!(text(&bad_device.stderr).contains("unknown device `tpu`"));

    assert_fails_cleanly(&rosetta(&["score", m, "--parallel", p, "--langs", "en,th"]), &["`th`", "does not occur"]);
    assert_fails_cleanly(&rosetta(&["score", m, "--parallel", p, "--reference", "de"]), &["reference language `de`"]);

    let broken = dir.join("broken.jsonl");
    std::fs::write(&broken, "{\"en\": \"a\", \"hu\": \"b\"}\n{\"en\": 3}\n").unwrap();
    assert_fails_cleanly(&rosetta(&["score", m, "--parallel", broken.to_str().unwrap()]), &["broken.jsonl:2", "--skip-bad-lines"]);
    let skipped = rosetta(&["score", m, "--parallel", broken.to_str().unwrap(), "--skip-bad-lines"]);
    assert!(skipped.status.success(), "{}", text(&skipped.stderr));
    assert!(text(&skipped.stderr).contains("skipped 1 bad lines"));

    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    assert_fails_cleanly(&rosetta(&["score", m, "--parallel", empty.to_str().unwrap()]), &["empty.jsonl", "no parallel records"]);

    assert_fails_cleanly(&rosetta(&["generate", m, "--prompt", "x", "--temperature", "1", "--top-p", "2"]), &["top-p must be in (0, 1]"]);
    assert_fails_cleanly(&rosetta(&["generate", m, "--prompt", "x", "--max-new-tokens", "100000"]), &["exceeds the model's context"]);
}

#[test]
fn default_model_runs() {
    let Some(model) = default_model() else {
        return skip("default model missing (run scripts/fetch-model.sh)");
    };
    let out = Command::new(env!("CARGO_BIN_EXE_rosetta"))
        .args(["generate", "--chat", "--prompt", "What is the capital of Hungary?", "--max-new-tokens", "20"])
        .env("ROSETTA_MODEL", &model)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Budapest"), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("tokens/s"));
}

/// The lab's rooms natively (`bench lab`) on a tiny model: every step runs and reports, with the
/// worker's sizes; a language the lab does not serve is a clean error. Timings are not asserted.
#[test]
fn lab_benchmark_runs_every_room() {
    let dir = temp_dir("cli-bench-lab");
    let model = dir.join("model");
    // The shift room's band needs more than two layers.
    write_tiny_deep_hf(&model, 3, 4);
    let json = dir.join("lab.json");
    let out = rosetta(&["bench", "lab", model.to_str().unwrap(), "--json", json.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for key in ["load_seconds", "forward_tokens_per_second", "decode_tokens_per_second", "geometry_seconds", "features_seconds"] {
        assert!(report[key].as_f64().is_some_and(|v| v.is_finite() && v > 0.0), "{key}: {report}");
    }
    assert_eq!(report["shift"]["sentences"], 16, "{report}");
    let [plain, shifted] = [0, 1].map(|i| report["shift"]["bits_per_char"][i].as_f64().unwrap());
    assert!(plain > 0.0 && shifted > 0.0 && plain != shifted, "the shift must change the cost: {plain} {shifted}");
    let (dense, pruned) =
        (report["sparsity"]["dense_bits_per_char"].as_array().unwrap(), report["sparsity"]["pruned_bits_per_char"].as_array().unwrap());
    assert_eq!(dense.len(), 4, "one cost per language: {report}");
    assert_eq!(pruned.len(), 4);
    assert!(dense.iter().zip(pruned).any(|(d, p)| d[1] != p[1]), "pruning half the weights must change some cost: {report}");
    assert!(text(&out.stdout).contains("sparsity 0 → 0.5"), "{}", text(&out.stdout));

    let bad = rosetta(&["bench", "lab", model.to_str().unwrap(), "--lang", "xx"]);
    assert_fails_cleanly(&bad, &["xx", "--lang", "hu"]);
}

/// The kernel benchmark's plumbing (tables, JSON, plot, bad shapes) at toy sizes on the CPU,
/// where both columns measure the references: the timings themselves are not asserted.
#[test]
fn kernel_benchmark_writes_json_and_a_plot() {
    let dir = temp_dir("cli-bench-kernels");
    let (json, plot) = (dir.join("bench.json"), dir.join("bench.svg"));
    let args = ["bench", "kernels", "--device", "cpu", "--n", "1,5", "--d", "3", "--mask-shapes", "4x8,3x7", "--iters", "1"];
    let out = rosetta(&[&args[..], &["--json", json.to_str().unwrap(), "--plot", plot.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let contrastive = report["contrastive"].as_array().unwrap();
    assert_eq!(contrastive.len(), 2);
    for cell in ["fused_forward", "composed_forward", "fused_forward_backward", "composed_forward_backward"] {
        assert!(contrastive.iter().all(|c| c[cell]["ms"].as_f64().is_some_and(|ms| ms >= 0.0)), "{cell}: {contrastive:?}");
    }
    let masking = report["masking"].as_array().unwrap();
    let kernels: Vec<&str> = masking.iter().filter(|m| m["rows"] == 4).map(|m| m["kernel"].as_str().unwrap()).collect();
    assert_eq!(kernels.len(), 7, "{kernels:?}");
    assert!(kernels.contains(&"exact-k mask (50%)") && kernels.contains(&"feature statistics"));
    // 4×8: Wanda reads W and the norms and writes S.
    let wanda = masking.iter().find(|m| m["rows"] == 4 && m["kernel"] == "wanda score").unwrap();
    assert_eq!(wanda["bytes_moved"].as_f64(), Some(8.0 * 32.0 + 4.0 * 8.0));
    // 3×7 has no 2:4 layout (7 % 4 ≠ 0): that shape's row is an error, the others still ran.
    assert!(masking.iter().any(|m| m["rows"] == 3 && m["error"].as_str().is_some_and(|e| e.contains("N:M"))), "{masking:?}");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("speed-up") && svg.contains("wanda score"), "{svg}");

    let bad = rosetta(&["bench", "kernels", "--device", "cpu", "--mask-shapes", "4y8"]);
    assert_fails_cleanly(&bad, &["--mask-shapes", "4y8"]);
}
