//! Which device the worker computes on: WebGPU when the browser offers an adapter to the worker,
//! otherwise burn's CPU backend compiled to wasm — and the sentence that tells the visitor which,
//! and why. (Chromium and Firefox give dedicated workers `navigator.gpu`; where a browser offers
//! WebGPU only to pages, the worker says so and computes on the CPU.)

use js_sys::Reflect;
use rosetta_model::burn::prelude::Device;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;

use crate::protocol::BackendInfo;

#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub info: BackendInfo,
    /// The largest storage buffer a kernel may bind (bytes); `None` on the CPU.
    pub max_buffer: Option<u64>,
}

fn get(target: &JsValue, key: &str) -> Option<JsValue> {
    Reflect::get(target, &JsValue::from_str(key)).ok().filter(|v| !v.is_undefined() && !v.is_null())
}

/// `navigator.gpu.requestAdapter()` answered with an adapter: the one check that tells "no
/// WebGPU" from "WebGPU that will work" before burn's runtime is started (it can start once).
async fn webgpu_adapter() -> Result<(), String> {
    let navigator = get(&js_sys::global(), "navigator").ok_or("no navigator")?;
    let gpu = get(&navigator, "gpu").ok_or("this browser offers no WebGPU to workers (navigator.gpu is missing)")?;
    let request = get(&gpu, "requestAdapter").ok_or("navigator.gpu has no requestAdapter")?;
    let promise = js_sys::Function::from(request).call0(&gpu).map_err(|e| format!("requestAdapter failed: {e:?}"))?;
    let adapter = JsFuture::from(js_sys::Promise::from(promise)).await.map_err(|e| format!("requestAdapter failed: {e:?}"))?;
    if adapter.is_null() || adapter.is_undefined() {
        return Err("WebGPU is present but offers no adapter (disabled, or no usable GPU)".into());
    }
    Ok(())
}

/// How many threads the CPU path computes on, and why: one. Threads in wasm need a
/// `SharedArrayBuffer`, which browsers give only to a cross-origin isolated page (COOP + COEP
/// headers: `rosetta lab` sends them, a static host must), and a module built with atomics.
fn cpu_threads() -> String {
    let isolated = get(&js_sys::global(), "crossOriginIsolated").is_some_and(|v| v.is_truthy());
    if isolated {
        "one thread (this build has no wasm threads)".into()
    } else {
        "one thread (the page is not cross-origin isolated: its host sends no COOP/COEP headers)".into()
    }
}

/// The device for the lab. `force_cpu` (the URL's `backend=cpu`) skips WebGPU.
pub async fn choose(force_cpu: bool) -> (Device, Backend) {
    let cpu = |why: String| {
        let why = format!("{why}; {}", cpu_threads());
        (Device::flex(), Backend { info: BackendInfo { name: "CPU (wasm)".into(), detail: why, is_gpu: false }, max_buffer: None })
    };
    if force_cpu {
        return cpu("chosen in the link (backend=cpu)".into());
    }
    if let Err(why) = webgpu_adapter().await {
        return cpu(why);
    }
    match Device::wgpu_options().init_with_setup_async().await {
        Ok((device, setup)) => {
            let info = setup.adapter.get_info();
            let limits = setup.device.limits();
            let detail = [info.name.as_str(), info.driver.as_str(), info.driver_info.as_str()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" · ");
            let detail = if detail.is_empty() { format!("{:?} adapter", info.device_type) } else { detail };
            let info = BackendInfo { name: "WebGPU".into(), detail, is_gpu: true };
            (device, Backend { info, max_buffer: Some(limits.max_storage_buffer_binding_size) })
        }
        Err(e) => cpu(format!("WebGPU could not start ({e:?})")),
    }
}
