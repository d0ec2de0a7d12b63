//! `rosetta train`, `data` and `plot` as a person runs them — including killing a training run
//! with SIGKILL at an arbitrary moment and resuming it, and crashing it dozens of times inside
//! its checkpoint writes (`ROSETTA_CRASH_AT`, see `rosetta_model::atomic::crash_point`).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and fixtures: a panic is how they report")]

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{config, losses, rosetta, text};
use std::time::{Duration, Instant};

use rosetta_tests::temp_dir;

#[test]
fn killed_at_any_moment_and_resumed_gives_the_same_run() {
    let steps = 120;
    let clean = temp_dir("cli-train-clean");
    let out = rosetta(&["train", "--config", config(&clean, steps).to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("finished at step 120") && text(&out.stdout).contains("hu:"), "{}", text(&out.stdout));
    let expected = losses(&clean.join("run"));
    assert_eq!(expected.len(), steps);

    let killed = temp_dir("cli-train-killed");
    let cfg = config(&killed, steps);
    let mut child = Command::new(env!("CARGO_BIN_EXE_rosetta"))
        .args(["train", "--config", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while losses(&killed.join("run")).len() < 23 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let logged = losses(&killed.join("run")).len();
    assert!(logged >= 23 && logged < steps, "the run was not interrupted mid-way ({logged} steps logged)");
    // Every checkpoint on disk is complete (a staging directory the kill interrupted is hidden
    // and not a checkpoint; the resume removes it).
    let checkpoints: Vec<PathBuf> = std::fs::read_dir(killed.join("run/checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("step-"))
        .collect();
    assert!(!checkpoints.is_empty(), "the kill came before the first checkpoint");
    for dir in checkpoints {
        for file in ["model.bpk", "optimizer.bpk", "state.json"] {
            assert!(dir.join(file).exists(), "{} lacks {file}", dir.display());
        }
    }
    let again = rosetta(&["train", "--config", cfg.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("--resume"), "{}", text(&again.stderr));
    let resumed = rosetta(&["train", "--config", cfg.to_str().unwrap(), "--resume"]);
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    assert_eq!(losses(&killed.join("run")), expected, "killed + resumed run differs from the clean run");

    let plotted = rosetta(&["plot", killed.join("run").to_str().unwrap()]);
    assert!(plotted.status.success(), "{}", text(&plotted.stderr));
    let svg = std::fs::read_to_string(killed.join("run/curves.svg")).unwrap();
    assert!(svg.contains("Training loss") && svg.contains("Held-out bits per character") && svg.contains(">hu<"));
}

/// Every moment of a durable write where a crash is injected: the fault-injection trials must
/// stop at each at least once.
const CRASH_POINTS: [&str; 8] = [
    "file written, not yet renamed",
    "file renamed, directory not yet synced",
    "metrics line not yet written",
    "staged file written",
    "staging complete, not yet moved",
    "directory in place, parent not yet synced",
    "an older checkpoint not yet pruned",
    "directory renamed away, not yet deleted",
];

/// The run crashes (abort, no clean-up, like SIGKILL) at a random crash point inside its
/// writes — checkpoint files, renames, pruning, the metrics log, the final export — and is
/// resumed, again and again until it finishes: every resume starts from what the crash left,
/// and the finished run's losses and final model are bit-identical to an uninterrupted run's.
#[test]
fn crashed_inside_checkpoint_writes_again_and_again_resumes_bit_for_bit() {
    let steps = 100;
    let every_two_steps = |dir: &Path| {
        let cfg = config(dir, steps);
        let text = std::fs::read_to_string(&cfg).unwrap().replace("checkpoint_every = 5", "checkpoint_every = 2");
        std::fs::write(&cfg, text).unwrap();
        cfg
    };
    let clean = temp_dir("cli-crash-clean");
    let out = rosetta(&["train", "--config", every_two_steps(&clean).to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let expected = losses(&clean.join("run"));
    assert_eq!(expected.len(), steps);

    let crashed = temp_dir("cli-crash-trials");
    let cfg = every_two_steps(&crashed);
    let run = crashed.join("run");
    let committed = |run: &Path| {
        std::fs::read_dir(run.join("checkpoints"))
            .map(|entries| entries.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().starts_with("step-")))
            .unwrap_or(false)
    };
    let mut rng = rosetta_rng::SplitMix64::new(2026);
    let mut crashes: Vec<String> = Vec::new();
    loop {
        assert!(crashes.len() < 400, "the run never finished: {crashes:?}");
        let crash_at = 1 + rng.below(24);
        let mut command = Command::new(env!("CARGO_BIN_EXE_rosetta"));
        command.args(["train", "--config", cfg.to_str().unwrap()]).env("ROSETTA_CRASH_AT", crash_at.to_string());
        if committed(&run) {
            command.arg("--resume");
        }
        let out = command.output().unwrap();
        if out.status.success() {
            break;
        }
        let stderr = text(&out.stderr);
        let label = stderr
            .split("crashing at `")
            .nth(1)
            .and_then(|rest| rest.split('`').next())
            .unwrap_or_else(|| panic!("trial {} failed, not at a crash point: {stderr}", crashes.len() + 1));
        assert_eq!(out.status.code(), None, "a crash point aborts the process: {stderr}");
        // What the crash left is always a run that resumes: checked by the next trial.
        crashes.push(label.to_string());
    }
    assert!(crashes.len() >= 50, "only {} crashes injected", crashes.len());
    for point in CRASH_POINTS {
        assert!(crashes.iter().any(|c| c == point), "no trial crashed at `{point}`: {crashes:?}");
    }
    assert_eq!(losses(&run), expected, "the crashed and resumed run differs from the clean run");
    let final_model = |run: &Path| std::fs::read(run.join("final/model.safetensors")).unwrap();
    assert!(final_model(&run) == final_model(&clean.join("run")), "the final models differ");
    // Nothing a crash left behind survives the last start.
    for dir in [run.clone(), run.join("checkpoints")] {
        let hidden: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(hidden.is_empty(), "{} still holds {hidden:?}", dir.display());
    }
    println!("{} crashes injected, at: {:?}", crashes.len(), {
        let mut counts = std::collections::BTreeMap::new();
        crashes.iter().for_each(|c| *counts.entry(c.as_str()).or_insert(0) += 1);
        counts
    });
}

#[test]
fn data_stats_and_mix() {
    let stats = rosetta(&["data", "stats"]);
    assert!(stats.status.success(), "{}", text(&stats.stderr));
    let out = text(&stats.stdout);
    for lang in ["\nhu ", "\nth ", "\nsw ", "\nzh ", "\nde ", "\nny ", "\nyo ", "\nzu ", "\nen "] {
        assert!(out.contains(lang), "stats lack {lang:?}:\n{out}");
    }
    assert!(out.contains("libreoffice-help") && out.contains("lingua"));

    let dir = temp_dir("cli-mix");
    let sample = dir.join("mix.jsonl");
    let mix = rosetta(&["data", "mix", "--mix", "hu:0.75,en:0.25", "--docs", "400", "--out", sample.to_str().unwrap()]);
    assert!(mix.status.success(), "{}", text(&mix.stderr));
    let hu = std::fs::read_to_string(&sample).unwrap().lines().filter(|l| l.contains("\"lang\":\"hu\"")).count();
    assert!((270..=330).contains(&hu), "{hu} of 400 documents are Hungarian");
    let bad = rosetta(&["data", "mix", "--mix", "hu:0.75,en:0.2"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad.stderr).contains("sum to"), "{}", text(&bad.stderr));
}

#[test]
fn a_config_typo_is_named() {
    let dir = temp_dir("cli-typo");
    let cfg = config(&dir, 3);
    let typo = std::fs::read_to_string(&cfg).unwrap().replace("lr = 2e-3", "lrate = 2e-3");
    std::fs::write(&cfg, typo).unwrap();
    let out = rosetta(&["train", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("run-3.toml") && err.contains("lrate") && !err.contains("panicked"), "{err}");
    assert!(!dir.join("run").exists(), "a refused run created its output directory");
}
