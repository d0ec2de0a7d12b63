//! Running the `rosetta` binary from the CLI tests.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers: a panic is how they report")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rosetta_tests::fixtures::write_tiny_hf;
use rosetta_tests::repo_root;

pub fn rosetta(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rosetta")).args(args).output().expect("run rosetta")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Exit code 1, an `error: ` line mentioning every string of `mentions`, and no panic.
pub fn assert_fails_cleanly(output: &Output, mentions: &[&str]) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "expected exit code 1, stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panicked: {stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("error: ")), "no `error: ` line in stderr: {stderr}");
    for m in mentions {
        assert!(stderr.contains(m), "stderr {stderr:?} does not mention {m:?}");
    }
}

/// A training config for a tiny model (written once per directory) on the embedded corpus:
/// `steps` steps of 2 rows × 32 tokens, a checkpoint every 5.
pub fn config(dir: &Path, steps: usize) -> PathBuf {
    let model = dir.join("model");
    if !model.exists() {
        write_tiny_hf(&model, 21);
    }
    let corpus = repo_root().join("data/corpus");
    let path = dir.join(format!("run-{steps}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"[model]
path = "model"

[data]
train = ["{}"]
mix = "hu:0.75,en:0.25"
eval = "{}"
eval_docs_per_lang = 2
seq_len = 32
batch_size = 2

[optim]
lr = 2e-3
warmup_steps = 5

[run]
steps = {steps}
out = "run"
checkpoint_every = 5
eval_every = 100
"#,
            corpus.join("monolingual.train.jsonl").display(),
            corpus.join("monolingual.test.jsonl").display()
        ),
    )
    .unwrap();
    path
}

/// The `step:loss` pairs a run logged, in order.
pub fn losses(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some(format!("{}:{}", v.get("step")?, v.get("loss")?)))
        .collect()
}
