//! What the worker reads from outside: same-origin fetches with progress, files the visitor
//! picked (read locally after a size check), and the module's memory.

use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

pub use rosetta_lab_protocol::browser::{js_error, now_ms, pause, run_static_constructors};

use crate::page_memory::check_picked_sizes;

fn fetch(url: &str) -> Result<js_sys::Promise, String> {
    let scope =
        js_sys::global().dyn_into::<web_sys::WorkerGlobalScope>().map_err(|_| "the lab fetches from its worker only".to_string())?;
    Ok(scope.fetch_with_str(url))
}

/// GETs `url` and reads the body chunk by chunk, reporting `(bytes so far, expected total)`.
/// `expected` is used when the server sends no length. In the worker `url` must be absolute (a
/// worker resolves relative URLs against its script, not the page).
pub async fn fetch_bytes(url: &str, expected: Option<u64>, mut progress: impl FnMut(u64, Option<u64>)) -> Result<Vec<u8>, String> {
    let response: web_sys::Response = JsFuture::from(fetch(url)?).await.map_err(|e| js_error(url, e))?.unchecked_into();
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

/// A file the visitor picked, read into memory.
pub struct PickedFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Reads the picked files, after checking from their sizes alone that they add up to at most
/// `limit` bytes ([`crate::page_memory`]): nothing too large is read.
pub async fn read_files(files: &[web_sys::File], limit: u64) -> Result<Vec<PickedFile>, String> {
    let sizes: Vec<(String, u64)> = files.iter().map(|f| (f.name(), f.size() as u64)).collect();
    check_picked_sizes(&sizes, limit)?;
    let mut out = Vec::with_capacity(files.len());
    for file in files {
        let buffer = JsFuture::from(file.array_buffer()).await.map_err(|e| js_error(&file.name(), e))?;
        out.push(PickedFile { name: file.name(), bytes: Uint8Array::new(&buffer).to_vec() });
    }
    Ok(out)
}

/// The module's linear memory: its high-water mark, since WebAssembly memory never shrinks.
pub fn wasm_memory_bytes() -> u64 {
    let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
    memory.buffer().unchecked_into::<js_sys::ArrayBuffer>().byte_length() as u64
}
