//! Which device the worker computes on, and the sentence that tells the visitor which and why:
//! burn's CPU backend compiled to wasm where the browser offers the worker no WebGPU adapter, and
//! otherwise whichever of the two a short measured probe finds faster — a software adapter
//! (SwiftShader, lavapipe) loses to the CPU path, a real GPU wins. The link can choose
//! (`backend=cpu`, `backend=webgpu`). (Chromium and Firefox give dedicated workers
//! `navigator.gpu`; where a browser offers WebGPU only to pages, the worker says so and computes
//! on the CPU.) The threaded module has no WebGPU (feature `webgpu` off): its worker computes on
//! the CPU.

use rosetta_model::burn::prelude::*;

use crate::protocol::{BackendChoice, BackendInfo};

#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub info: BackendInfo,
    /// The largest storage buffer a kernel may bind (bytes); `None` on the CPU.
    pub max_buffer: Option<u64>,
}

/// How many threads the CPU path computes on, and why. `module_note` is `static/worker.js`'s
/// reason for the module it loaded (it alone sees the page's isolation, the link's `threads` and
/// the adapter before choosing): threads in wasm need a `SharedArrayBuffer`, which browsers give
/// only to a cross-origin isolated page (COOP + COEP headers: `rosetta lab` sends them, a static
/// host must), and the threaded module (built with atomics), which has no WebGPU.
fn cpu_threads(module_note: &str) -> String {
    #[cfg(feature = "threads")]
    let threads = super::threads::count();
    #[cfg(not(feature = "threads"))]
    let threads = 1;
    let count = if threads == 1 { "one thread".to_string() } else { format!("{threads} threads") };
    if module_note.is_empty() { count } else { format!("{count}: {module_note}") }
}

/// The device for the lab, as the link chooses or as the probe measures.
pub async fn choose(choice: BackendChoice, module_note: &str) -> (Device, Backend) {
    let cpu = |why: String| {
        let why = format!("{why}; {}", cpu_threads(module_note));
        (Device::flex(), Backend { info: BackendInfo { name: "CPU (wasm)".into(), detail: why, is_gpu: false }, max_buffer: None })
    };
    if choice == BackendChoice::Cpu {
        return cpu("chosen in the link (backend=cpu)".into());
    }
    #[cfg(not(feature = "webgpu"))]
    return cpu("the lab's threaded CPU build".into());
    #[cfg(feature = "webgpu")]
    webgpu::choose_measured(choice, cpu).await
}

/// The WebGPU side of the choice: the adapter check, the probe, the measured choice.
#[cfg(feature = "webgpu")]
mod webgpu {
    use js_sys::Reflect;
    use rosetta_model::burn::prelude::*;
    use rosetta_model::burn::tensor::Distribution;
    use wasm_bindgen::JsValue;
    use wasm_bindgen_futures::JsFuture;

    use super::Backend;
    use crate::browser::now_ms;
    use crate::protocol::{BackendChoice, BackendInfo};

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

    /// The probe: a decoder projection's matmul for a short prompt, `[16 × 576] × [576 × 1536]`
    /// in f32 (SmolLM2's width and MLP), read back.
    const PROBE: [usize; 3] = [16, 576, 1536];

    /// Milliseconds of one probe on `device`: the best of three after a warm-up (which compiles the
    /// kernels).
    async fn probe_ms(device: &Device) -> Result<f64, String> {
        let [m, k, n] = PROBE;
        let a = Tensor::<2>::random([m, k], Distribution::Default, device);
        let b = Tensor::<2>::random([k, n], Distribution::Default, device);
        let mut best = f64::INFINITY;
        for round in 0..4 {
            let started = now_ms();
            let product = a.clone().matmul(b.clone());
            rosetta_model::readback::to_vec_f32(product.sum()).await.map_err(|e| e.to_string())?;
            if round > 0 {
                best = best.min(now_ms() - started);
            }
        }
        Ok(best)
    }

    /// WebGPU where the browser offers the worker an adapter that starts, then the link's choice or
    /// the faster of the two in the probe.
    pub(super) async fn choose_measured(choice: BackendChoice, cpu: impl Fn(String) -> (Device, Backend)) -> (Device, Backend) {
        if let Err(why) = webgpu_adapter().await {
            return cpu(why);
        }
        let (device, setup) = match Device::wgpu_options().init_with_setup_async().await {
            Ok(started) => started,
            Err(e) => return cpu(format!("WebGPU could not start ({e:?})")),
        };
        let info = setup.adapter.get_info();
        let adapter = [info.name.as_str(), info.driver.as_str(), info.driver_info.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" · ");
        let adapter = if adapter.is_empty() { format!("{:?} adapter", info.device_type) } else { adapter };
        let webgpu = |why: String| {
            let info = BackendInfo { name: "WebGPU".into(), detail: format!("{adapter}; {why}"), is_gpu: true };
            (device.clone(), Backend { info, max_buffer: Some(setup.device.limits().max_storage_buffer_binding_size) })
        };
        if choice == BackendChoice::WebGpu {
            return webgpu("chosen in the link (backend=webgpu)".into());
        }
        let [m, k, n] = PROBE;
        let probe = format!("a {m}×{k}×{n} matmul");
        match (probe_ms(&device).await, probe_ms(&Device::flex()).await) {
            (Ok(gpu), Ok(cpu_ms)) if gpu < cpu_ms => {
                webgpu(format!("measured faster: {probe} took {gpu:.1} ms here, {cpu_ms:.1} ms on the CPU"))
            }
            (Ok(gpu), Ok(cpu_ms)) => {
                cpu(format!("measured faster than WebGPU ({adapter}): {probe} took {cpu_ms:.1} ms here, {gpu:.1} ms on WebGPU"))
            }
            (Err(e), _) => cpu(format!("WebGPU ({adapter}) failed its probe ({e})")),
            (Ok(_), Err(e)) => webgpu(format!("the CPU failed its probe ({e})")),
        }
    }
}
