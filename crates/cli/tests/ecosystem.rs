//! Where researchers' models and dashboards already are, through the CLI: Hugging Face ids
//! resolved from the HF cache (and a clear error offline or unreachable), PEFT adapters applied
//! (`--adapter`) and exported (`export --peft-from`), GGUF export, TensorBoard event files.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and fixtures: a panic is how they report")]

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

use common::{assert_fails_cleanly, text};
use rosetta_tests::fixtures::{hf_cache_entry, tiny_train_config, write_tiny_hf};
use rosetta_tests::temp_dir;

/// `rosetta` with a Hugging Face cache of the test's own and no way to reach the real Hub.
fn rosetta_with_cache(cache: &Path, offline: bool, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rosetta"));
    command.args(args).env("HF_HUB_CACHE", cache).env("HF_ENDPOINT", "http://127.0.0.1:9").env_remove("HF_HOME");
    if offline {
        command.env("HF_HUB_OFFLINE", "1");
    } else {
        command.env_remove("HF_HUB_OFFLINE").env_remove("TRANSFORMERS_OFFLINE");
    }
    command.output().expect("run rosetta")
}

fn stdout_json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn hub_ids_resolve_through_the_hf_cache() {
    let dir = temp_dir("cli-hub");
    let cache = dir.join("hub");
    let (main_model, tagged_model) = (dir.join("main"), dir.join("tagged"));
    write_tiny_hf(&main_model, 5);
    write_tiny_hf(&tagged_model, 6);
    let main_commit = "1111111111111111111111111111111111111111";
    let tagged_commit = "2222222222222222222222222222222222222222";
    hf_cache_entry(&cache, "rosetta-tests/tiny", Some("main"), main_commit, &main_model);
    hf_cache_entry(&cache, "rosetta-tests/tiny", Some("v1"), tagged_commit, &tagged_model);

    // The id, its tag and a commit hash each open their snapshot, offline.
    let origin =
        |spec: &str| stdout_json(&rosetta_with_cache(&cache, true, &["info", spec, "--json"]))["model"].as_str().unwrap().to_string();
    assert!(origin("rosetta-tests/tiny").ends_with(&format!("snapshots/{main_commit}")), "{}", origin("rosetta-tests/tiny"));
    assert!(origin("rosetta-tests/tiny@v1").ends_with(&format!("snapshots/{tagged_commit}")));
    assert!(origin(&format!("rosetta-tests/tiny@{main_commit}")).ends_with(&format!("snapshots/{main_commit}")));
    // The snapshot is the model: scoring it through the id equals scoring the directory.
    let score = |spec: &str| {
        let out = rosetta_with_cache(&cache, true, &["score", spec, "--langs", "en,hu", "--max-sentences", "4"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        language_rows(&text(&out.stdout))
    };
    assert_eq!(score("rosetta-tests/tiny@v1"), score(tagged_model.to_str().unwrap()));

    // Not cached while offline: says where it looked and how to fetch it.
    let missing = rosetta_with_cache(&cache, true, &["info", "rosetta-tests/absent"]);
    assert_fails_cleanly(
        &missing,
        &["rosetta-tests/absent", "models--rosetta-tests--absent", "offline", "huggingface-cli download rosetta-tests/absent"],
    );
    // Online but the Hub cannot be reached: the same advice, and how to stay offline.
    let unreachable = rosetta_with_cache(&cache, false, &["info", "rosetta-tests/absent@v2"]);
    assert_fails_cleanly(&unreachable, &["could not be reached", "HF_HUB_OFFLINE=1", "--revision v2"]);
    // The lab serves the snapshot's files themselves (not the cache's relative links), named by the id.
    let pkg = dir.join("pkg");
    rosetta_tests::write_stand_in_lab_pkg(&pkg);
    let site = dir.join("site");
    let lab = rosetta_with_cache(
        &cache,
        true,
        &[
            "lab",
            "--model",
            "rosetta-tests/tiny",
            "--pkg",
            pkg.to_str().unwrap(),
            "--out",
            site.to_str().unwrap(),
            "--no-serve",
            "--rows",
            "4",
        ],
    );
    assert!(lab.status.success(), "{}", text(&lab.stderr));
    let manifest = rosetta_tests::read_json(&site.join("data/manifest.json"));
    assert_eq!(manifest["model"]["name"], "tiny");
    let weights = site.join("data/model/model.safetensors");
    assert!(!weights.is_symlink() && std::fs::read(&weights).unwrap() == std::fs::read(main_model.join("model.safetensors")).unwrap());

    // A snapshot missing its weights is not taken as the model.
    std::fs::remove_file(cache.join(format!("models--rosetta-tests--tiny/snapshots/{main_commit}/model.safetensors"))).unwrap();
    let partial = rosetta_with_cache(&cache, true, &["info", "rosetta-tests/tiny"]);
    assert_fails_cleanly(&partial, &["no complete revision `main`"]);
}

#[test]
fn adapters_gguf_and_tensorboard_from_the_command_line() {
    let dir = temp_dir("cli-ecosystem");
    let model = dir.join("model");
    write_tiny_hf(&model, 8);
    let mut config = tiny_train_config(&model, &dir.join("run"));
    config.lora = Some(rosetta_train::config::LoraSection {
        rank: 2,
        alpha: 4.0,
        targets: vec!["q_proj".into(), "v_proj".into()],
        init: None,
        base: rosetta_train::config::LoraBase::Auto,
    });
    config.optim.lr = 1e-2;
    let config_path = dir.join("train.toml");
    std::fs::write(&config_path, config.to_toml(&Default::default())).unwrap();
    let trained = common::rosetta(&["train", "--config", config_path.to_str().unwrap()]);
    assert!(trained.status.success(), "{}", text(&trained.stderr));
    let run = dir.join("run");
    let events: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("events.out.tfevents."))
        .collect();
    assert_eq!(events.len(), 1, "one TensorBoard event file beside metrics.jsonl");
    assert!(events[0].metadata().unwrap().len() > 200, "the event file holds the run's scalars");

    // The run's adapter, exported again from its checkpoint, equals the one the run wrote.
    let exported = dir.join("adapter");
    let out = common::rosetta(&["export", "--peft-from", run.to_str().unwrap(), "--out", exported.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read(exported.join("adapter_model.safetensors")).unwrap(),
        std::fs::read(run.join("adapter/adapter_model.safetensors")).unwrap()
    );

    // Base + --adapter scores like the merged model.
    let score = |args: &[&str]| {
        let out = common::rosetta(&[&["score"], args, &["--langs", "en,hu", "--max-sentences", "4"]].concat());
        assert!(out.status.success(), "{}", text(&out.stderr));
        language_rows(&text(&out.stdout))
    };
    let with_adapter = score(&[model.to_str().unwrap(), "--adapter", exported.to_str().unwrap()]);
    assert_eq!(with_adapter, score(&[run.join("final").to_str().unwrap()]));
    assert_ne!(with_adapter, score(&[model.to_str().unwrap()]), "the adapter changed nothing");
    // A full fine-tune has no adapter to export.
    let refused = common::rosetta(&["export", "--peft-from", model.to_str().unwrap(), "--out", dir.join("x").to_str().unwrap()]);
    assert_fails_cleanly(&refused, &["config.toml"]);

    // GGUF out, read back by Rosetta with the same scores.
    let gguf = dir.join("tiny.gguf");
    let out = common::rosetta(&["export", run.join("final").to_str().unwrap(), "--gguf", "f32", "--out", gguf.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(score(&[gguf.to_str().unwrap()]), score(&[run.join("final").to_str().unwrap()]));
    let bad_type = common::rosetta(&["export", model.to_str().unwrap(), "--gguf", "q4_k", "--out", gguf.to_str().unwrap()]);
    assert_fails_cleanly_clap(&bad_type, &["q4_k", "f32, f16, q8_0"]);
}

/// The per-language rows of `rosetta score`'s table (what the model computed, not where it came from).
fn language_rows(table: &str) -> Vec<String> {
    let rows: Vec<String> = table.lines().filter(|l| l.starts_with("en ") || l.starts_with("hu ")).map(str::to_string).collect();
    assert_eq!(rows.len(), 2, "{table}");
    rows
}

/// clap's own refusal (exit code 2) naming the bad value and the choices.
fn assert_fails_cleanly_clap(output: &Output, mentions: &[&str]) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    for m in mentions {
        assert!(stderr.contains(m), "{stderr:?} does not mention {m:?}");
    }
}
