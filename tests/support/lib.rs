//! Support for Rosetta's cross-crate tests: where the Python reference lives, how to run its
//! scripts, and how a test that cannot run says so.
//!
//! A test that needs the reference stack (torch + transformers), the default model, the llama.cpp
//! peer or a wgpu adapter and finds it missing calls [`skip`] — the one place that decides. With
//! `ROSETTA_REQUIRE_REFERENCE=1` (set by `scripts/test.sh`, so by `.ci/run`) a missing
//! prerequisite fails the test; otherwise (a plain `cargo test`) the test returns, and says so on
//! the terminal past the harness's output capture, with what to install.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and fixtures: a panic is how they report")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub mod fixtures;

use serde_json::Value;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// A stand-in for `scripts/build-lab.sh`'s output in `pkg` (the page's and the worker's modules
/// with their bindings): assembling a lab site needs the files, not a browser.
pub fn write_stand_in_lab_pkg(pkg: &Path) {
    std::fs::create_dir_all(pkg).unwrap();
    for module in ["rosetta_lab_page", "rosetta_lab", "rosetta_lab_threads"] {
        std::fs::write(pkg.join(format!("{module}.js")), "export default async function init() {}").unwrap();
        std::fs::write(pkg.join(format!("{module}_bg.wasm")), b"\0asm").unwrap();
    }
}

fn cache_dir() -> PathBuf {
    std::env::var_os("ROSETTA_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| ".".into())).join(".cache/rosetta"))
}

/// Whether every test must run (`ROSETTA_REQUIRE_REFERENCE=1`).
pub fn prerequisites_required() -> bool {
    std::env::var("ROSETTA_REQUIRE_REFERENCE").is_ok_and(|v| v == "1")
}

/// Reports a test that cannot run. Returns normally (the caller then returns) unless the
/// environment demands every test to run ([`prerequisites_required`]), where it panics.
pub fn skip(why: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_string();
    if prerequisites_required() {
        panic!("{test} cannot run: {why} (ROSETTA_REQUIRE_REFERENCE=1 requires every test to run)");
    }
    // Straight to the process's stderr: `eprintln!` would be captured by the test harness and
    // shown only on failure, and a skipped test passes — it must not pass unnoticed.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED {test}: {why}\n*** it passed without checking anything; scripts/test.sh (ROSETTA_REQUIRE_REFERENCE=1) runs it or fails"
    );
}

/// The reference Python interpreter (`ROSETTA_PYTHON`, or the venv `scripts/setup-python.sh` makes).
pub fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ROSETTA_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = std::env::var_os("ROSETTA_VENV").map(PathBuf::from).unwrap_or_else(|| cache_dir().join("venv"));
    let python = venv.join("bin/python");
    python.exists().then_some(python)
}

/// The default model (`scripts/fetch-model.sh` puts it there).
pub fn default_model() -> Option<PathBuf> {
    let models = std::env::var_os("ROSETTA_MODELS").map(PathBuf::from).unwrap_or_else(|| cache_dir().join("models"));
    let path = models.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    path.exists().then_some(path)
}

/// Runs `tests/python/<script>` with `args`; panics with its stderr if it fails.
pub fn run_python(python: &Path, script: &str, args: &[&str]) {
    let script_path = repo_root().join("tests/python").join(script);
    let output = Command::new(python)
        .arg(&script_path)
        .args(args)
        .env("PYTHONWARNINGS", "ignore")
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_VERBOSITY", "error")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    if !output.status.success() {
        panic!("{script} failed ({}):\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    }
}

/// A fresh directory under the system temp dir, unique to this process and `name`.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rosetta-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// The tiny random HF checkpoints of `tests/python/make_tiny_models.py`, made once per process.
pub fn tiny_models(python: &Path) -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = temp_dir("tiny-models");
        run_python(python, "make_tiny_models.py", &[dir.to_str().expect("utf-8 temp path")]);
        dir
    })
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

pub fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, value.to_string()).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Flattens a nested JSON array of numbers.
pub fn flatten_f32(value: &Value) -> Vec<f32> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<f32>) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            Value::Number(n) => out.push(n.as_f64().unwrap_or(f64::NAN) as f32),
            _ => out.push(f32::NAN),
        }
    }
    walk(value, &mut out);
    out
}

pub fn ids(value: &Value) -> Vec<u32> {
    value.as_array().expect("id list").iter().map(|v| v.as_u64().expect("id") as u32).collect()
}

/// Raw little-endian f32 values (what `hf_logits.py` writes as `logits_<i>.f32`).
pub fn read_f32_file(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// Raw little-endian f64 values.
pub fn read_f64_file(path: &Path) -> Vec<f64> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    bytes.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes"))).collect()
}

/// max |a - b| between f32 values and an f64 reference.
pub fn max_abs_diff_f64(a: &[f32], reference: &[f64]) -> f64 {
    assert_eq!(a.len(), reference.len(), "compared tensors differ in size");
    a.iter().zip(reference).map(|(x, y)| (*x as f64 - y).abs()).fold(0.0, f64::max)
}

/// max |a - b|, NaN-aware (a NaN anywhere gives infinity).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "compared tensors differ in size");
    a.iter().zip(b).map(|(x, y)| if x.is_nan() || y.is_nan() { f32::INFINITY } else { (x - y).abs() }).fold(0.0, f32::max)
}

/// The llama.cpp peer's directory (`scripts/setup-peers.sh` installs npm node-llama-cpp there).
pub fn llama_peer() -> Option<PathBuf> {
    let dir = cache_dir().join("tools/llama");
    dir.join("node_modules/node-llama-cpp/package.json").exists().then_some(dir)
}

/// llama.cpp's greedy continuation of `ids` in `model` (`scripts/peers/llama_greedy.mjs`), and
/// its own tokens of `text`: `{"generated": [...], "tokens": [...]}`.
pub fn llama_greedy(peer: &Path, model: &Path, ids: &[u32], new_tokens: usize, text: &str) -> Value {
    // ES modules resolve packages from the script's directory: run a copy beside node_modules
    // (written under a per-process name, then renamed, so parallel tests never see half a file).
    let script = peer.join("llama_greedy.mjs");
    let staged = peer.join(format!(".llama_greedy.{}.mjs", std::process::id()));
    std::fs::copy(repo_root().join("scripts/peers/llama_greedy.mjs"), &staged).expect("copy the peer script");
    std::fs::rename(&staged, &script).expect("place the peer script");
    let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
    let output = Command::new("node")
        .arg(&script)
        .arg(model)
        .args(["--ids", &ids.join(","), "--new-tokens", &new_tokens.to_string(), "--text", text])
        .output()
        .unwrap_or_else(|e| panic!("cannot run node: {e}"));
    if !output.status.success() {
        panic!("llama_greedy.mjs failed ({}):\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON from llama_greedy.mjs:\n{stdout}"));
    serde_json::from_str(line).expect("llama_greedy.mjs JSON")
}

/// The wgpu device, or — when the machine has no adapter at all — a skip naming the fix
/// (`None`). CI has Mesa's lavapipe (`scripts/setup-web.sh`). Tests on wgpu ask here first, so
/// a skip means "no adapter", never "something failed on the adapter".
pub fn wgpu_device() -> Option<rosetta_model::burn::prelude::Device> {
    use rosetta_model::burn::backend::wgpu::wgpu;
    let instance = wgpu::Instance::default();
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    if adapters.is_empty() {
        skip("no wgpu adapter on this machine (install Mesa's lavapipe: apt-get install mesa-vulkan-drivers)");
        return None;
    }
    Some(rosetta_model::burn::prelude::Device::wgpu(Default::default()))
}
