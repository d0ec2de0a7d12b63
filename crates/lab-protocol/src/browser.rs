//! What the page and the worker both need from the browser, in whichever global scope they run
//! (`Window` on the page, `DedicatedWorkerGlobalScope` in the worker): the clock, a yield to the
//! event loop, error text, and the static constructors run once.

use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

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
