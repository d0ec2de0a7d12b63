//! Getting bytes into the page: same-origin fetches with progress (the served model and manifest)
//! and files a visitor picks (read locally — nothing is uploaded). Then the checkpoint, checked
//! against the adapter's limits before any weight goes to the GPU.

use js_sys::{Reflect, Uint8Array};
use rosetta_model::burn::prelude::Device;
use rosetta_model::checkpoint::Checkpoint;
use rosetta_model::{CausalLm, ModelConfig, Precision, TextTokenizer};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::manifest::{Manifest, ModelFiles, ModelFormat};
use crate::page_memory::{check_picked_sizes, human_bytes, largest_weight_bytes};
use crate::ui::backend::Backend;

pub struct Loaded {
    pub name: String,
    pub model: CausalLm,
    pub tokenizer: TextTokenizer,
    pub seconds: f64,
    /// How the weights are held, for the page: packed quantized blocks (and which matmul tile
    /// runs them) or f32.
    pub storage: String,
}

fn js_error(what: &str, e: JsValue) -> String {
    format!("{what}: {}", e.as_string().or_else(|| js_sys::JSON::stringify(&e).ok().and_then(|s| s.as_string())).unwrap_or_default())
}

/// GETs `url` (relative to the page) and reads the body chunk by chunk, reporting
/// `(bytes so far, expected total)`. `expected` is used when the server sends no length.
pub async fn fetch_bytes(url: &str, expected: Option<u64>, mut progress: impl FnMut(u64, Option<u64>)) -> Result<Vec<u8>, String> {
    let window = web_sys::window().ok_or("no window")?;
    let response: web_sys::Response = JsFuture::from(window.fetch_with_str(url)).await.map_err(|e| js_error(url, e))?.unchecked_into();
    if !response.ok() {
        return Err(format!("{url}: the server answered {} {}", response.status(), response.status_text()));
    }
    let total = response.headers().get("content-length").ok().flatten().and_then(|v| v.parse::<u64>().ok()).or(expected);
    let body = response.body().ok_or_else(|| format!("{url}: empty response"))?;
    let reader: web_sys::ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut bytes = Vec::with_capacity(total.unwrap_or(0) as usize);
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(|e| js_error(url, e))?;
        if Reflect::get(&chunk, &"done".into()).map(|d| d.is_truthy()).unwrap_or(true) {
            break;
        }
        let value: Uint8Array = Reflect::get(&chunk, &"value".into()).map_err(|e| js_error(url, e))?.unchecked_into();
        bytes.extend_from_slice(&value.to_vec());
        progress(bytes.len() as u64, total);
    }
    Ok(bytes)
}

pub async fn fetch_text(url: &str) -> Result<String, String> {
    let bytes = fetch_bytes(url, None, |_, _| {}).await?;
    String::from_utf8(bytes).map_err(|_| format!("{url} is not UTF-8 text"))
}

pub async fn fetch_manifest(url: &str) -> Result<Manifest, String> {
    let text = fetch_text(url).await?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| format!("{url} is not a lab manifest ({e}): rebuild it with `rosetta lab`"))?;
    manifest.validate().map_err(|e| format!("{url}: {e}"))?;
    Ok(manifest)
}

/// A file the visitor picked, read into memory.
pub struct PickedFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Reads the picked files, after checking from their sizes alone that they add up to at most
/// `limit` bytes ([`crate::page_memory`]): nothing too large is read.
pub async fn read_picked(files: &web_sys::FileList, limit: u64) -> Result<Vec<PickedFile>, String> {
    let sizes: Vec<(String, u64)> = (0..files.length()).filter_map(|i| files.get(i)).map(|f| (f.name(), f.size() as u64)).collect();
    check_picked_sizes(&sizes, limit)?;
    let mut out = Vec::new();
    for i in 0..files.length() {
        let Some(file) = files.get(i) else { continue };
        let buffer = JsFuture::from(file.array_buffer()).await.map_err(|e| js_error(&file.name(), e))?;
        out.push(PickedFile { name: file.name(), bytes: Uint8Array::new(&buffer).to_vec() });
    }
    Ok(out)
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
    // With `Precision::Auto` a quantized checkpoint stays quantized on the CPU path (the packed
    // kernels' simd128 tile); WebGPU gets f32 until the WGSL quantized kernels exist.
    let model = checkpoint.load_with(device, precision).map_err(|e| e.to_string())?;
    let (packed, projections) = model.packed_projections();
    let storage = if packed > 0 {
        format!(
            "{packed}/{projections} projections kept quantized ({}, quantized matmul: {})",
            human_bytes(model.packed_bytes() as u64),
            rosetta_kernels::quant::Tiles::best().name()
        )
    } else {
        "f32 weights".to_string()
    };
    let storage = format!("{storage}; page memory {}", human_bytes(wasm_memory_bytes()));
    Ok(Loaded { name, model, tokenizer: checkpoint.tokenizer.clone(), seconds: (now_ms() - started) / 1000.0, storage })
}

/// The module's linear memory: its high-water mark, since WebAssembly memory never shrinks.
pub fn wasm_memory_bytes() -> u64 {
    let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
    memory.buffer().unchecked_into::<js_sys::ArrayBuffer>().byte_length() as u64
}

pub fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map(|p| p.now()).unwrap_or(0.0)
}

/// Lets the browser paint and handle input before the next piece of work.
pub async fn pause() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(window) = web_sys::window() {
            let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 0);
        }
    });
    let _ = JsFuture::from(promise).await;
}
