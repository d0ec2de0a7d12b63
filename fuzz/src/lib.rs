//! # rosetta-fuzz
//!
//! One function per loader or parser of files people download and hand to Rosetta — GGUF,
//! safetensors (with the sparse and mask formats), `config.json`, `tokenizer.json`, Jinja chat
//! templates, the JSONL readers, training TOML and a checkpoint's `state.json`. Each takes
//! arbitrary bytes and must return — an `Err` is fine, a panic, abort, hang or huge allocation
//! is a bug. libFuzzer drives them (`fuzz_targets/`, `scripts/fuzz.sh`); `tests/fuzz/replay.rs`
//! replays seeds, mutations and every past crash on stable in CI.

use std::path::Path;

use rosetta_data::{BadLines, ParallelCorpus};
use rosetta_model::burn::prelude::Device;
use rosetta_model::tokenizer::chat::{ChatMessage, render};
use rosetta_model::weights::gguf::GgufFile;
use rosetta_model::weights::safetensors_source::SafetensorsFile;
use rosetta_model::weights::{Blob, WeightSource};
use rosetta_model::{Checkpoint, ModelConfig, TextTokenizer};

/// The target functions by name (`scripts/fuzz.sh` and the replay test list them from here).
pub const TARGETS: [(&str, fn(&[u8])); 10] = [
    ("gguf_header", gguf_header),
    ("gguf_tokenizer", gguf_tokenizer),
    ("gguf", gguf),
    ("safetensors", safetensors),
    ("config_json", config_json),
    ("tokenizer_json", tokenizer_json),
    ("chat_template", chat_template),
    ("jsonl", jsonl),
    ("train_toml", train_toml),
    ("state_json", state_json),
];

/// Inputs above this are cut: loaders are bounded by the input's size, and fuzzing large
/// inputs only slows the search.
const MAX_INPUT: usize = 1 << 20;

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(&data[..data.len().min(MAX_INPUT)]).ok()
}

/// A GGUF file as `rosetta info` reads it, short of the tokenizer and the model: header,
/// metadata, tensor table, the config, and the first small tensors dequantised and packed. Fast
/// enough for a million runs in minutes, where [`gguf`] builds a whole model per input.
pub fn gguf_header(data: &[u8]) {
    let Ok(file) = GgufFile::parse(Blob::from(data[..data.len().min(MAX_INPUT)].to_vec()), "fuzz.gguf") else { return };
    let _ = rosetta_model::weights::gguf_source::model_config(&file);
    for info in file.tensors.iter().filter(|t| t.num_elements() <= 4096).take(8) {
        let _ = file.read_f32(info);
        let _ = file.read_packed(info);
    }
}

/// The tokenizer a GGUF's metadata describes (byte-level BPE or SentencePiece), rebuilt and used.
pub fn gguf_tokenizer(data: &[u8]) {
    let Ok(file) = GgufFile::parse(Blob::from(data[..data.len().min(MAX_INPUT)].to_vec()), "fuzz.gguf") else { return };
    if let Ok(tokenizer) = TextTokenizer::from_gguf(&file)
        && let Ok(ids) = tokenizer.encode("Egy mondat, 12 számmal. 你好", true)
    {
        let _ = tokenizer.decode(&ids, false);
    }
}

/// A GGUF file as `rosetta info` and the lab's file picker open it: header, metadata, tensor
/// table, config, tokenizer; then, if that all holds, every tensor dequantised into the model.
pub fn gguf(data: &[u8]) {
    let Ok(checkpoint) = Checkpoint::from_gguf_bytes(data[..data.len().min(MAX_INPUT)].to_vec(), "fuzz.gguf") else { return };
    let _ = checkpoint.tokenizer.encode("Egy mondat, 12 számmal.", true);
    let _ = checkpoint.load(&Device::flex());
}

/// A safetensors file: header, the sparse/mask metadata, every tensor read.
pub fn safetensors(data: &[u8]) {
    let Ok(file) = SafetensorsFile::parse(Blob::from(data[..data.len().min(MAX_INPUT)].to_vec()), "fuzz.safetensors") else { return };
    for name in file.names() {
        let _ = file.read(&name);
    }
    if let Ok(source) = rosetta_model::weights::safetensors_source::SafetensorsSource::from_files("fuzz", vec![file]) {
        for name in source.names() {
            let _ = source.read(&name);
        }
    }
}

/// An HF `config.json`.
pub fn config_json(data: &[u8]) {
    if let Some(text) = text(data)
        && let Ok(config) = ModelConfig::from_hf_json(text, "fuzz/config.json")
    {
        let _ = config.num_parameters();
        let _ = config.to_hf_json("float32");
    }
}

/// A `tokenizer.json`, then encoding and decoding with it.
pub fn tokenizer_json(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let Ok(tokenizer) = TextTokenizer::from_hf_json(text, None, None, "fuzz/tokenizer.json") else { return };
    if let Ok(ids) = tokenizer.encode("Hello, világ! 123 — 你好", true) {
        let _ = tokenizer.decode(&ids, false);
    }
    let _ = tokenizer.id_bound();
}

/// A chat template rendered with a short conversation (as `generate --chat` does).
pub fn chat_template(data: &[u8]) {
    let Some(template) = text(data) else { return };
    let messages = [ChatMessage::system("Be brief."), ChatMessage::user("Szia!"), ChatMessage::assistant("Szia!")];
    let _ = render(template, &messages, true, Some("<s>"), Some("</s>"));
}

/// Parallel JSONL, in both bad-line modes.
pub fn jsonl(data: &[u8]) {
    let Some(text) = text(data) else { return };
    for mode in [BadLines::Fail, BadLines::Skip] {
        let _ = ParallelCorpus::parse(text, Path::new("fuzz.jsonl"), mode);
    }
}

/// A training config (`rosetta train --config`), parsed and validated.
pub fn train_toml(data: &[u8]) {
    if let Some(text) = text(data)
        && let Ok(config) = rosetta_train::TrainConfig::from_toml_str(text)
    {
        let _ = config.validate();
        let _ = config.identity(&Default::default());
    }
}

/// A checkpoint's `state.json` (what `--resume` reads).
pub fn state_json(data: &[u8]) {
    if let Some(text) = text(data) {
        let _ = serde_json::from_str::<rosetta_train::checkpoint::RunState>(text);
    }
}
