//! What the page and the worker both need from the browser, in whichever global scope they run
//! (`Window` on the page, `DedicatedWorkerGlobalScope` in the worker): fetches with progress, the
//! clock, a yield to the event loop, files read locally, and the module's memory.

use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::page_memory::check_picked_sizes;

pub fn js_error(what: &str, e: JsValue) -> String {
    let text = e
        .as_string()
        .or_else(|| e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())))
        .or_else(|| js_sys::JSON::stringify(&e).ok().and_then(|s| s.as_string()))
        .unwrap_or_default();
    format!("{what}: {text}")
}

fn worker_scope() -> Option<web_sys::WorkerGlobalScope> {
    js_sys::global().dyn_into::<web_sys::WorkerGlobalScope>().ok()
}

fn fetch(url: &str) -> Result<js_sys::Promise, String> {
    match (web_sys::window(), worker_scope()) {
        (Some(window), _) => Ok(window.fetch_with_str(url)),
        (None, Some(scope)) => Ok(scope.fetch_with_str(url)),
        (None, None) => Err("neither a page nor a worker: nothing to fetch with".into()),
    }
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

pub fn now_ms() -> f64 {
    let performance = match (web_sys::window(), worker_scope()) {
        (Some(window), _) => window.performance(),
        (None, Some(scope)) => scope.performance(),
        (None, None) => None,
    };
    performance.map(|p| p.now()).unwrap_or(0.0)
}

/// Lets the event loop run — the page paints and handles input, the worker reads new requests
/// (a newer slider value, Pause) — before the next piece of work. A message to a fresh channel:
/// unlike `setTimeout(0)`, which browsers clamp to 4 ms once nested, it costs no fixed delay.
pub async fn pause() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let Ok(channel) = web_sys::MessageChannel::new() else {
            let _ = resolve.call0(&JsValue::UNDEFINED);
            return;
        };
        channel.port1().set_onmessage(Some(&resolve));
        if channel.port2().post_message(&JsValue::NULL).is_err() {
            let _ = resolve.call0(&JsValue::UNDEFINED);
        }
    });
    let _ = JsFuture::from(promise).await;
}

#[allow(unsafe_code)]
unsafe extern "C" {
    /// The static constructors, synthesised by wasm-ld (cubecl's and pliron's `inventory`
    /// registrations live there).
    fn __wasm_call_ctors();
}

/// Runs the module's static constructors, once per instance; called first by both entry points
/// (`mount_lab` on the page, `worker_start` in the worker). A module that never calls them itself
/// counts as a "command" to wasm-ld, which then wraps *every* export — every event handler, every
/// message, every resumed future — in a call to all of them: hundreds of inventory registrations
/// per call into the module. Calling them explicitly turns the wrapping off.
pub fn run_static_constructors() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static DONE: AtomicBool = AtomicBool::new(false);
    if !DONE.swap(true, Ordering::Relaxed) {
        // SAFETY: the linker's constructor function, run once before anything reads what the
        // constructors register (`inventory` tolerates repeats anyway).
        #[allow(unsafe_code)]
        unsafe {
            __wasm_call_ctors()
        };
    }
}
