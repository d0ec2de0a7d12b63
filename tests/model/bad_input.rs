//! Bad input gives a clear error naming the file (and tensor), never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and fixtures: a panic is how they report")]

use rosetta_model::burn::prelude::Device;
use rosetta_model::{Checkpoint, ModelError};
use rosetta_tests::fixtures::{tiny_gguf, write_tiny_hf};
use rosetta_tests::temp_dir;

fn open_and_load(path: &std::path::Path) -> Result<(), ModelError> {
    let checkpoint = Checkpoint::open(path, None)?;
    checkpoint.load(&Device::flex()).map(|_| ())
}

fn error_of(path: &std::path::Path) -> String {
    match open_and_load(path) {
        Ok(()) => panic!("{} loaded, but should not have", path.display()),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "error {message:?} does not mention {part:?}");
    }
}

#[test]
fn a_good_tiny_checkpoint_loads() {
    let dir = temp_dir("good");
    write_tiny_hf(&dir.join("m"), 0);
    open_and_load(&dir.join("m")).unwrap();
    std::fs::write(dir.join("m.gguf"), tiny_gguf(None)).unwrap();
    open_and_load(&dir.join("m.gguf")).unwrap();
}

#[test]
fn truncated_safetensors() {
    let dir = temp_dir("truncated-st");
    let model = dir.join("m");
    write_tiny_hf(&model, 0);
    let file = model.join("model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 100]).unwrap();
    assert_mentions(&error_of(&model), &["model.safetensors", "truncated"]);
}

#[test]
fn corrupt_safetensors_header() {
    let dir = temp_dir("corrupt-st");
    let model = dir.join("m");
    write_tiny_hf(&model, 0);
    let file = model.join("model.safetensors");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[9] = b'!';
    std::fs::write(&file, &bytes).unwrap();
    assert_mentions(&error_of(&model), &["model.safetensors", "not a valid safetensors file"]);
}

#[test]
fn missing_tensor_is_named() {
    let dir = temp_dir("missing");
    let model = dir.join("m");
    write_tiny_hf(&model, 0);
    let file = model.join("model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<_> = tensors.tensors().into_iter().filter(|(n, _)| n != "model.layers.1.mlp.up_proj.weight").collect();
    let rewritten = safetensors::serialize(kept, None).unwrap();
    std::fs::write(&file, rewritten).unwrap();
    assert_mentions(&error_of(&model), &["model.layers.1.mlp.up_proj.weight", "missing"]);
}

#[test]
fn shape_mismatch_names_tensor_and_shapes() {
    let dir = temp_dir("shape");
    let model = dir.join("m");
    write_tiny_hf(&model, 0);
    let config_path = model.join("config.json");
    let config = std::fs::read_to_string(&config_path).unwrap().replace("\"intermediate_size\": 48", "\"intermediate_size\": 64");
    std::fs::write(&config_path, config).unwrap();
    assert_mentions(&error_of(&model), &["model.safetensors", "mlp.gate_proj.weight", "[48, 32]", "[64, 32]"]);
}

#[test]
fn unknown_architecture() {
    let dir = temp_dir("arch");
    let model = dir.join("m");
    write_tiny_hf(&model, 0);
    let config_path = model.join("config.json");
    let config = std::fs::read_to_string(&config_path).unwrap().replace("\"model_type\": \"llama\"", "\"model_type\": \"gpt_neox\"");
    std::fs::write(&config_path, config).unwrap();
    assert_mentions(&error_of(&model), &["config.json", "gpt_neox", "not supported"]);
}

#[test]
fn invalid_tokenizer_json() {
    let dir = temp_dir("tok");
    let model = dir.join("m");
    write_tiny_hf(&model, 0);
    std::fs::write(model.join("tokenizer.json"), "{\"model\": {\"type\": \"BPE\", ").unwrap();
    assert_mentions(&error_of(&model), &["tokenizer.json", "not a valid tokenizer.json"]);
}

#[test]
fn tokenizer_that_does_not_fit_the_model() {
    let dir = temp_dir("tok-size");
    let model = dir.join("m");
    write_tiny_hf(&model, 0);
    let config_path = model.join("config.json");
    let config = std::fs::read_to_string(&config_path).unwrap().replace("\"vocab_size\": 261", "\"vocab_size\": 200");
    std::fs::write(&config_path, config).unwrap();
    assert_mentions(&error_of(&model), &["tokenizer.json", "261 tokens", "200 embedding rows"]);
}

#[test]
fn truncated_gguf() {
    let dir = temp_dir("truncated-gguf");
    let bytes = tiny_gguf(None);
    let path = dir.join("m.gguf");
    std::fs::write(&path, &bytes[..bytes.len() - 64]).unwrap();
    assert_mentions(&error_of(&path), &["m.gguf", "truncated"]);
    std::fs::write(&path, &bytes[..100]).unwrap();
    assert_mentions(&error_of(&path), &["m.gguf", "truncated"]);
}

#[test]
fn unknown_quantisation_type() {
    let dir = temp_dir("quant");
    let path = dir.join("m.gguf");
    std::fs::write(&path, tiny_gguf(Some(("blk.0.ffn_up.weight", 39)))).unwrap();
    assert_mentions(&error_of(&path), &["m.gguf", "blk.0.ffn_up.weight", "MXFP4", "supported"]);
}

#[test]
fn not_a_model_at_all() {
    let dir = temp_dir("junk");
    let path = dir.join("notes.txt");
    std::fs::write(&path, "hello").unwrap();
    assert_mentions(&error_of(&path), &["notes.txt", "expected an HF model directory"]);
    assert_mentions(&error_of(&dir.join("nowhere")), &["nowhere", "no such file"]);
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert_mentions(&error_of(&empty), &["config.json", "missing"]);
}
