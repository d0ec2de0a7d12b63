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

    // As many entries as rows, but numbered past them: ids the embedding has no row for.
    let sparse = dir.join("sparse");
    write_tiny_hf(&sparse, 0);
    let tokenizer_path = sparse.join("tokenizer.json");
    let mut tokenizer: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&tokenizer_path).unwrap()).unwrap();
    let vocab = tokenizer["model"]["vocab"].as_object_mut().unwrap();
    let (last, _) = vocab.iter().max_by_key(|(_, id)| id.as_u64()).map(|(k, v)| (k.clone(), v.clone())).unwrap();
    vocab.insert(last, serde_json::json!(100_000));
    std::fs::write(&tokenizer_path, tokenizer.to_string()).unwrap();
    assert_mentions(&error_of(&sparse), &["tokenizer.json", "ids up to 100000", "261 embedding rows"]);
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

/// The process's peak resident memory so far (Linux `VmHWM`), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// `work` fails with an error mentioning `parts`, in under a second and 50 MB.
fn refused_quickly_and_small(parts: &[&str], work: impl FnOnce() -> Result<(), ModelError>) {
    let (start, rss_before) = (std::time::Instant::now(), peak_rss());
    let err = work().expect_err("bad input was accepted").to_string();
    let (seconds, grown) = (start.elapsed().as_secs_f64(), peak_rss().saturating_sub(rss_before));
    assert_mentions(&err, parts);
    assert!(seconds < 1.0, "refusing took {seconds:.2} s: {err}");
    assert!(grown < 50 << 20, "refusing grew the peak memory by {} MB: {err}", grown >> 20);
}

/// A 1-KB GGUF header whose metadata claims a model no file holds.
fn lying_gguf(kv: &[(&str, rosetta_model::weights::gguf::GgufValue)]) -> Vec<u8> {
    use rosetta_model::weights::gguf::{GgufValue, write_gguf};
    let s = |v: &str| GgufValue::String(v.into());
    let mut all = vec![
        ("general.architecture", s("llama")),
        ("llama.block_count", GgufValue::U32(4)),
        ("llama.embedding_length", GgufValue::U32(64)),
        ("llama.feed_forward_length", GgufValue::U32(128)),
        ("llama.attention.head_count", GgufValue::U32(4)),
        ("llama.vocab_size", GgufValue::U32(300)),
    ];
    for (key, value) in kv {
        all.retain(|(k, _)| k != key);
        all.push((key, value.clone()));
    }
    let bytes = write_gguf(&all, &[]);
    assert!(bytes.len() < 1024, "the lie should be small: {} bytes", bytes.len());
    bytes
}

#[test]
fn a_small_gguf_claiming_four_billion_layers_is_refused_at_once() {
    use rosetta_model::weights::gguf::GgufValue;
    let bytes = lying_gguf(&[("llama.block_count", GgufValue::U32(4_000_000_000))]);
    let dir = temp_dir("lying-gguf");
    let path = dir.join("layers.gguf");
    std::fs::write(&path, &bytes).unwrap();
    refused_quickly_and_small(&["layers.gguf", "num_hidden_layers", "4000000000", "corrupt"], || Checkpoint::open(&path, None).map(|_| ()));
    // The lab's entry point (bytes a visitor picked) refuses it the same way.
    refused_quickly_and_small(&["picked.gguf", "num_hidden_layers"], || {
        Checkpoint::from_gguf_bytes(bytes.clone(), "picked.gguf").map(|_| ())
    });
    // Widths and the vocabulary too.
    for (key, value) in [("llama.embedding_length", 1u32 << 31), ("llama.feed_forward_length", 1 << 30), ("llama.vocab_size", u32::MAX)] {
        let bytes = lying_gguf(&[(key, GgufValue::U32(value))]);
        refused_quickly_and_small(&["big.gguf", &value.to_string()], || Checkpoint::from_gguf_bytes(bytes, "big.gguf").map(|_| ()));
    }
}

#[test]
fn a_gguf_array_claiming_more_items_than_bytes_is_refused_before_reserving() {
    // An array of 2^40 strings in a file of a few hundred bytes.
    let mut bytes = lying_gguf(&[(
        "tokenizer.ggml.tokens",
        rosetta_model::weights::gguf::GgufValue::Array(vec![rosetta_model::weights::gguf::GgufValue::String("a".into())]),
    )]);
    let count_at = bytes.windows(b"tokenizer.ggml.tokens".len()).position(|w| w == b"tokenizer.ggml.tokens").unwrap() + 21 + 4 + 4;
    bytes[count_at..count_at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    refused_quickly_and_small(&["array.gguf", "claims 1099511627776 items"], || {
        Checkpoint::from_gguf_bytes(bytes, "array.gguf").map(|_| ())
    });
}

#[test]
fn a_shard_index_pointing_outside_the_model_directory_is_refused() {
    let dir = temp_dir("index-escape");
    let model = dir.join("m");
    write_tiny_hf(&model, 0);
    std::fs::rename(model.join("model.safetensors"), model.join("model-00001-of-00001.safetensors")).unwrap();
    let index = serde_json::json!({"weight_map": {"model.embed_tokens.weight": "../../../../etc/passwd", "model.norm.weight": "model-00001-of-00001.safetensors"}});
    std::fs::write(model.join("model.safetensors.index.json"), index.to_string()).unwrap();
    refused_quickly_and_small(&["model.safetensors.index.json", "../../../../etc/passwd", "plain file names"], || open_and_load(&model));
    for bad in ["/etc/passwd", "sub/model.safetensors", "model.bin"] {
        let index = serde_json::json!({"weight_map": {"model.norm.weight": bad}});
        std::fs::write(model.join("model.safetensors.index.json"), index.to_string()).unwrap();
        assert_mentions(&error_of(&model), &["model.safetensors.index.json", bad]);
    }
}

#[test]
fn a_chat_template_that_loops_forever_is_stopped() {
    let dir = temp_dir("endless-template");
    let model = dir.join("m");
    write_tiny_hf(&model, 0);
    let config_path = model.join("tokenizer_config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["chat_template"] = serde_json::json!("{% for i in range(100000) %}{% for j in range(100000) %}{{ '' }}{% endfor %}{% endfor %}");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let checkpoint = Checkpoint::open(&model, None).unwrap();
    let template = checkpoint.tokenizer.chat_template.clone().unwrap();
    let messages = [rosetta_model::tokenizer::chat::ChatMessage::user("Szia!")];
    refused_quickly_and_small(&["did not finish", "chat_template"], || {
        rosetta_model::tokenizer::chat::render(&template, &messages, true, None, None).map(|_| ())
    });
}
