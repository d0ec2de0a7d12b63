//! Getting a model into the worker: the served files (same-origin fetches with progress) or the
//! files a visitor picked (read locally — nothing is uploaded), as a checkpoint checked against
//! the page's memory and the adapter's limits before any weight goes to the device.

use rosetta_model::burn::prelude::Device;
use rosetta_model::checkpoint::Checkpoint;
use rosetta_model::{CausalLm, ModelConfig, Precision, TextTokenizer};

use super::backend::Backend;
use crate::browser::{PickedFile, fetch_bytes, fetch_text, now_ms, wasm_memory_bytes};
use crate::manifest::{Manifest, ModelFiles, ModelFormat};
use crate::page_memory::{human_bytes, largest_weight_bytes};

pub struct Loaded {
    pub name: String,
    pub model: CausalLm,
    pub tokenizer: TextTokenizer,
    pub seconds: f64,
    /// How the weights are held, for the page: packed quantized blocks (and which matmul tile
    /// runs them) or f32.
    pub storage: String,
}

pub async fn fetch_manifest(url: &str) -> Result<Manifest, String> {
    let text = fetch_text(url).await?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| format!("{url} is not a lab manifest ({e}): rebuild it with `rosetta lab`"))?;
    manifest.validate().map_err(|e| format!("{url}: {e}"))?;
    Ok(manifest)
}

/// A checkpoint from picked files: one `.gguf`, or an HF model's `config.json` +
/// `tokenizer.json` + `*.safetensors` (+ optional `tokenizer_config.json`) picked together.
pub fn checkpoint_from_picked(mut files: Vec<PickedFile>) -> Result<Checkpoint, String> {
    if files.is_empty() {
        return Err("no file picked".into());
    }
    if let Some(i) = files.iter().position(|f| f.name.ends_with(".gguf")) {
        let file = files.swap_remove(i);
        return Checkpoint::from_gguf_bytes(file.bytes, &file.name).map_err(|e| e.to_string());
    }
    let text = |name: &str, files: &[PickedFile]| -> Result<Option<String>, String> {
        files
            .iter()
            .find(|f| f.name == name)
            .map(|f| String::from_utf8(f.bytes.clone()).map_err(|_| format!("{name} is not UTF-8 text")))
            .transpose()
    };
    let shards: Vec<(String, Vec<u8>)> =
        files.iter().filter(|f| f.name.ends_with(".safetensors")).map(|f| (f.name.clone(), f.bytes.clone())).collect();
    let config = text("config.json", &files)?;
    let tokenizer = text("tokenizer.json", &files)?;
    match (config, tokenizer, shards.is_empty()) {
        (Some(config), Some(tokenizer), false) => {
            let tokenizer_config = text("tokenizer_config.json", &files)?;
            Checkpoint::from_hf_bytes(&config, &tokenizer, tokenizer_config.as_deref(), shards, "picked HF model")
                .map_err(|e| e.to_string())
        }
        (config, tokenizer, no_shards) => {
            let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
            let mut missing = Vec::new();
            if config.is_none() {
                missing.push("config.json");
            }
            if tokenizer.is_none() {
                missing.push("tokenizer.json");
            }
            if no_shards {
                missing.push("*.safetensors");
            }
            Err(format!(
                "{} is not a model: pick one .gguf file, or an HF model's config.json, tokenizer.json and *.safetensors together (missing: {})",
                names.join(", "),
                missing.join(", ")
            ))
        }
    }
}

/// The model's fetched files as a checkpoint.
pub async fn checkpoint_from_server(
    base: &str,
    files: &ModelFiles,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<Checkpoint, String> {
    let mut done = 0u64;
    let mut picked = Vec::new();
    for name in &files.files {
        let before = done;
        let bytes = fetch_bytes(&format!("{base}{name}"), None, |n, _| progress(before + n, Some(files.bytes))).await?;
        done += bytes.len() as u64;
        picked.push(PickedFile { name: name.rsplit('/').next().unwrap_or(name).to_string(), bytes });
    }
    let checkpoint = checkpoint_from_picked(picked)?;
    if files.format == ModelFormat::Gguf && checkpoint.config.vocab_size == 0 {
        return Err(format!("{}: the GGUF file has no vocabulary", files.name));
    }
    Ok(checkpoint)
}

/// Refuses a model the adapter cannot hold, before uploading anything.
pub fn check_fits(config: &ModelConfig, backend: &Backend, limit_override: Option<u64>) -> Result<(), String> {
    let Some(limit) = limit_override.or(backend.max_buffer) else { return Ok(()) };
    let needed = largest_weight_bytes(config);
    if needed > limit {
        return Err(format!(
            "this model is too large for the adapter: its largest weight needs {} in one buffer, the adapter allows {}. \
             Open the page with ?backend=cpu to run it on the CPU, or pick a smaller model.",
            human_bytes(needed),
            human_bytes(limit)
        ));
    }
    Ok(())
}

pub fn load(checkpoint: &Checkpoint, device: &Device, precision: Precision, name: String, started: f64) -> Result<Loaded, String> {
    // With `Precision::Auto` a quantized checkpoint stays quantized: on the CPU path through the
    // packed kernels' simd128 tile, on WebGPU in GPU buffers through the WGSL kernel.
    let model = checkpoint.load_with(device, precision).map_err(|e| e.to_string())?;
    let (packed, projections) = model.packed_projections();
    let kernel = if rosetta_kernels::is_wgpu(device) { "WGSL" } else { rosetta_kernels::quant::Tiles::best().name() };
    let storage = if packed > 0 {
        format!(
            "{packed}/{projections} projections kept quantized ({}, quantized matmul: {kernel})",
            human_bytes(model.packed_bytes() as u64)
        )
    } else {
        "f32 weights".to_string()
    };
    let storage = format!("{storage}; worker memory {}", human_bytes(wasm_memory_bytes()));
    Ok(Loaded { name, model, tokenizer: checkpoint.tokenizer.clone(), seconds: (now_ms() - started) / 1000.0, storage })
}
