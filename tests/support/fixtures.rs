//! Tiny checkpoints built in Rust, for tests that need a model on disk but no reference stack.

use std::path::Path;

use rosetta_kernels::quant::GgmlType;
use rosetta_model::burn::prelude::Device;
use rosetta_model::export::{ExportOptions, export_hf};
use rosetta_model::weights::WeightSource;
use rosetta_model::weights::gguf::{GgufValue, write_gguf};
use rosetta_model::weights::random::RandomWeights;
use rosetta_model::{CausalLm, ModelConfig};

pub use rosetta_model::tiny::{tiny_config, tiny_tokenizer, tiny_tokenizer_json};

pub fn tiny_model(seed: u64) -> CausalLm {
    let config = tiny_config();
    CausalLm::from_source(&config, &RandomWeights::new(&config, seed, 0.2), &Device::flex()).expect("tiny model")
}

/// [`tiny_model`] with `layers` decoder layers (layer-band methods need more than two).
pub fn tiny_deep_model(seed: u64, layers: usize) -> CausalLm {
    let config = ModelConfig { num_hidden_layers: layers, ..tiny_config() };
    CausalLm::from_source(&config, &RandomWeights::new(&config, seed, 0.2), &Device::flex()).expect("tiny deep model")
}

/// Writes a tiny random model as an HF directory.
pub fn write_tiny_hf(dir: &Path, seed: u64) {
    let options = ExportOptions { overwrite: true, ..Default::default() };
    export_hf(&tiny_model(seed), &tiny_tokenizer(), dir, &options).expect("export tiny model");
}

/// Writes [`tiny_deep_model`] as an HF directory.
pub fn write_tiny_deep_hf(dir: &Path, seed: u64, layers: usize) {
    let options = ExportOptions { overwrite: true, ..Default::default() };
    export_hf(&tiny_deep_model(seed, layers), &tiny_tokenizer(), dir, &options).expect("export tiny deep model");
}

/// The bytes of a tiny llama GGUF with F32 tensors and a gpt2 tokenizer. `tensor_type` may
/// override the ggml type id of one tensor (to test unsupported quantisations).
pub fn tiny_gguf(tensor_type: Option<(&str, u32)>) -> Vec<u8> {
    tiny_gguf_typed(|gguf, _| match tensor_type {
        Some((target, id)) if target == gguf => id,
        _ => 0,
    })
}

/// [`tiny_gguf`] with every 2-D tensor whose rows are whole 32-value blocks stored Q8_0 (the
/// embedding, head and every projection but `ffn_down`, whose rows have 48 values): a mixed
/// packed / f32 model for the quantized path.
pub fn tiny_gguf_q8_0() -> Vec<u8> {
    tiny_gguf_typed(|_, shape| if shape.len() == 2 && shape[1] % 32 == 0 { Q8_0 } else { 0 })
}

/// ggml's type id of Q8_0.
const Q8_0: u32 = 8;

/// The tiny GGUF with the ggml type id `type_of(gguf name, HF shape)` per tensor; F32 and Q8_0
/// are encoded, any other id keeps f32 bytes (for the unsupported-type errors).
fn tiny_gguf_typed(type_of: impl Fn(&str, &[usize]) -> u32) -> Vec<u8> {
    let config = tiny_config();
    let weights = RandomWeights::new(&config, 1, 0.2);
    let gguf_name = |hf: &str| -> String {
        hf.replace("model.embed_tokens.weight", "token_embd.weight")
            .replace("model.norm.weight", "output_norm.weight")
            .replace("lm_head.weight", "output.weight")
            .replace("model.layers.", "blk.")
            .replace("input_layernorm", "attn_norm")
            .replace("post_attention_layernorm", "ffn_norm")
            .replace("self_attn.q_proj", "attn_q")
            .replace("self_attn.k_proj", "attn_k")
            .replace("self_attn.v_proj", "attn_v")
            .replace("self_attn.o_proj", "attn_output")
            .replace("mlp.gate_proj", "ffn_gate")
            .replace("mlp.up_proj", "ffn_up")
            .replace("mlp.down_proj", "ffn_down")
    };
    let tensors: Vec<(String, Vec<usize>, u32, Vec<u8>)> = weights
        .names()
        .into_iter()
        .map(|name| {
            let t = weights.read(&name).expect("random tensor");
            let gguf = gguf_name(&name);
            let ty = type_of(&gguf, &t.shape);
            let bytes = if ty == Q8_0 {
                rosetta_kernels::quant::blocks::encode(GgmlType::Q8_0, &t.data).expect("Q8_0 encodes")
            } else {
                t.data.iter().flat_map(|v| v.to_le_bytes()).collect()
            };
            (gguf, t.shape, ty, bytes)
        })
        .collect();
    let table = rosetta_model::tokenizer::gguf::byte_to_unicode();
    let mut tokens: Vec<GgufValue> = table.iter().map(|c| GgufValue::String(c.to_string())).collect();
    for t in ["<s>", "</s>", "<|endoftext|>", "th", "Ġt"] {
        tokens.push(GgufValue::String(t.into()));
    }
    let mut types = vec![GgufValue::I32(1); 256];
    types.extend([3, 3, 3, 1, 1].map(GgufValue::I32));
    let s = |v: &str| GgufValue::String(v.into());
    let u = GgufValue::U32;
    let kv = vec![
        ("general.architecture", s("llama")),
        ("general.name", s("tiny")),
        ("llama.block_count", u(config.num_hidden_layers as u32)),
        ("llama.context_length", u(config.max_position_embeddings as u32)),
        ("llama.embedding_length", u(config.hidden_size as u32)),
        ("llama.feed_forward_length", u(config.intermediate_size as u32)),
        ("llama.attention.head_count", u(config.num_attention_heads as u32)),
        ("llama.attention.head_count_kv", u(config.num_key_value_heads as u32)),
        ("llama.attention.layer_norm_rms_epsilon", GgufValue::F32(1e-5)),
        ("llama.rope.freq_base", GgufValue::F32(10_000.0)),
        ("tokenizer.ggml.model", s("gpt2")),
        ("tokenizer.ggml.pre", s("default")),
        ("tokenizer.ggml.tokens", GgufValue::Array(tokens)),
        ("tokenizer.ggml.token_type", GgufValue::Array(types)),
        ("tokenizer.ggml.merges", GgufValue::Array(vec![s("t h"), s("Ġ t")])),
        ("tokenizer.ggml.bos_token_id", u(256)),
        ("tokenizer.ggml.eos_token_id", u(257)),
    ];
    let tensors_ref: Vec<(&str, Vec<usize>, u32, Vec<u8>)> =
        tensors.iter().map(|(n, s, t, d)| (n.as_str(), s.clone(), *t, d.clone())).collect();
    write_gguf(&kv, &tensors_ref)
}

/// A 12-step causal-LM run of `model` on the embedded corpus (hu:0.75, en:0.25), written to `out`.
pub fn tiny_train_config(model: &Path, out: &Path) -> rosetta_train::TrainConfig {
    let corpus = crate::repo_root().join("data/corpus");
    let text = format!(
        r#"
[model]
path = "{model}"

[data]
train = ["{train}"]
mix = "hu:0.75,en:0.25"
eval = "{eval}"
eval_docs_per_lang = 4
seq_len = 32
batch_size = 2

[optim]
lr = 3e-3
min_lr = 3e-4
warmup_steps = 2

[run]
steps = 12
out = "{out}"
eval_every = 6
checkpoint_every = 4
keep_last = 2
"#,
        model = model.display(),
        train = corpus.join("monolingual.train.jsonl").display(),
        eval = corpus.join("monolingual.test.jsonl").display(),
        out = out.display(),
    );
    let path = out.with_extension("toml");
    std::fs::create_dir_all(path.parent().expect("a run directory has a parent")).expect("create the run's parent");
    std::fs::write(&path, text).expect("write the run config");
    rosetta_train::TrainConfig::from_toml_file(&path).expect("the tiny run config parses")
}

/// Puts the files of `model_dir` into a Hugging Face hub cache as `huggingface_hub` lays it out:
/// `models--org--name/blobs/<sha256>`, `snapshots/<commit>/<file>` linking to the blob, and
/// `refs/<reference>` holding the commit (when a reference is given). Returns the snapshot.
pub fn hf_cache_entry(cache: &Path, repo: &str, reference: Option<&str>, commit: &str, model_dir: &Path) -> std::path::PathBuf {
    use sha2::{Digest, Sha256};
    let root = cache.join(format!("models--{}", repo.replace('/', "--")));
    let (blobs, snapshot) = (root.join("blobs"), root.join("snapshots").join(commit));
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    for entry in std::fs::read_dir(model_dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let hash: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(blobs.join(&hash), &bytes).unwrap();
        let link = snapshot.join(path.file_name().unwrap());
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(Path::new("../../blobs").join(&hash), &link).unwrap();
    }
    if let Some(reference) = reference {
        std::fs::create_dir_all(root.join("refs")).unwrap();
        std::fs::write(root.join("refs").join(reference), commit).unwrap();
    }
    snapshot
}

/// Valid inputs of every fuzz target (`rosetta_fuzz::TARGETS`), the starting points of the
/// fuzzers and of the replay test's mutations: real files as Rosetta writes and reads them.
/// A GGUF's metadata alone (no tensors): the small seed of the tokenizer target.
fn metadata_only(gguf: &[u8]) -> Vec<u8> {
    use rosetta_model::weights::gguf::{GgufFile, write_gguf};
    let file = GgufFile::parse(rosetta_model::weights::Blob::from(gguf.to_vec()), "seed.gguf").expect("the tiny GGUF parses");
    let kv: Vec<(&str, _)> = file.metadata.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    write_gguf(&kv, &[])
}

pub fn fuzz_seeds() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let dir = crate::temp_dir("fuzz-seeds");
    let model = dir.join("model");
    write_tiny_hf(&model, 1);
    let read = |name: &str| std::fs::read(model.join(name)).expect("tiny model file");
    let corpus = crate::repo_root().join("data/corpus/parallel.test.jsonl");
    let parallel: Vec<u8> =
        std::fs::read_to_string(&corpus).expect("the embedded corpus").lines().take(6).collect::<Vec<_>>().join("\n").into_bytes();
    let train = tiny_train_config(&model, &dir.join("run")).to_toml(&Default::default()).into_bytes();
    let state = serde_json::json!({
        "step": 8, "tokens_seen": 4096, "rosetta_version": "0.1.0", "config": {"model": {"path": "m"}}, "method": null,
        "stream": {
            "sampler": {"rng": {"state": 12345}, "seed": 7, "cursors": [3, 1], "epochs": [0, 0]},
            "packer": {"pending": {"ids": [1, 2, 3], "targets": [true, true, false], "lang": "hu"}}
        }
    });
    vec![
        ("gguf_header", vec![tiny_gguf(None), tiny_gguf_q8_0()]),
        ("gguf_tokenizer", vec![metadata_only(&tiny_gguf(None))]),
        ("gguf", vec![tiny_gguf(None), tiny_gguf_q8_0()]),
        ("safetensors", vec![read("model.safetensors")]),
        ("config_json", vec![read("config.json")]),
        ("tokenizer_json", vec![read("tokenizer.json")]),
        (
            "chat_template",
            vec![
                rosetta_model::tokenizer::chat::CHATML.as_bytes().to_vec(),
                b"{% for m in messages %}{% if m.role == 'system' %}{{ m.content | trim }}{% else %}{{ '<|' ~ m.role ~ '|>' ~ m.content }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ bos_token }}{% endif %}".to_vec(),
            ],
        ),
        ("jsonl", vec![parallel]),
        ("train_toml", vec![train]),
        ("state_json", vec![state.to_string().into_bytes()]),
    ]
}
