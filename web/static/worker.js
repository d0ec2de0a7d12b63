// The lab's worker: all model work runs here (crates/lab), off the page's main thread. The
// model's module is downloaded and compiled here, while the page (its own small module,
// rosetta_lab_page) is already on screen; requests that arrive meanwhile wait in a queue and are
// handed to the Rust side with it. A failure to start is the worker's error event on the page,
// which then says the lab stopped.
//
// Two builds of the model's module, chosen here before either is downloaded:
// - rosetta_lab_threads: the CPU path on rayon's pool over wasm threads (one Web Worker per
//   thread beside this one, static/thread.js, sharing this module's memory). Browsers allow that only on a
//   cross-origin isolated page (COOP + COEP headers). It has no WebGPU.
// - rosetta_lab: WebGPU (a measured probe against the CPU decides), and the CPU on one thread.
// The threaded build is taken when the page is isolated, the browser reports more than one core,
// and WebGPU would not be used anyway: the link says backend=cpu, or the browser offers no
// adapter, or only a software one (SwiftShader: a CPU emulating a GPU, which loses to the CPU).
// The link's `threads=N` sets the count (threads=1: one thread). The reason goes to the Rust side,
// which shows it beside the backend's name.

const queued = [];
self.onmessage = (event) => queued.push(event.data);

const link = new URLSearchParams(self.location.search);
const MAX_THREADS = 8;

// The threads the CPU path may use, or the reason it gets one.
function threadCount() {
  if (!self.crossOriginIsolated) {
    return { threads: 1, why: "the page is not cross-origin isolated (its host sends no COOP/COEP headers), so the browser allows no wasm threads" };
  }
  const asked = Number.parseInt(link.get("threads") ?? "", 10);
  if (asked === 1) return { threads: 1, why: "the link asks for one (threads=1)" };
  const cores = navigator.hardwareConcurrency || 1;
  const threads = Math.min(Number.isFinite(asked) && asked > 1 ? asked : cores, MAX_THREADS);
  if (threads < 2) return { threads: 1, why: "this browser reports one core" };
  return { threads, why: "" };
}

// Why WebGPU would not be used, or null when it may be (the WebGPU build then probes it).
async function withoutWebGpu() {
  const choice = link.get("backend");
  if (choice === "cpu") return "the link asks for the CPU (backend=cpu)";
  if (choice === "webgpu") return null;
  const adapter = await self.navigator.gpu?.requestAdapter?.().catch(() => null);
  if (!adapter) return "this browser offers the worker no WebGPU adapter";
  const info = adapter.info ?? {};
  const software = info.isFallbackAdapter || adapter.isFallbackAdapter || /swiftshader|llvmpipe|lavapipe/i.test(`${info.architecture} ${info.description} ${info.device}`);
  return software ? `WebGPU's only adapter is a software one (${info.architecture || info.description || "fallback"}), which the CPU path outruns` : null;
}

// Starts `threads − 1` thread workers on the threaded module's memory, then rayon's pool on them
// and on this worker, its thread 0.
async function startThreads(lab, threads) {
  const start = { module: lab.thread_pool_module(), memory: lab.thread_pool_memory() };
  const ports = [];
  await Promise.all(
    Array.from({ length: threads - 1 }, () => {
      const thread = new Worker(new URL("thread.js", import.meta.url), { type: "module" });
      // A thread's panic or trap goes straight to the page: this worker is blocked in the pool
      // while its threads compute, and could not pass it on.
      const channel = new MessageChannel();
      ports.push(channel.port1);
      return new Promise((resolve, reject) => {
        thread.onmessage = (event) => (event.data === "ready" ? resolve() : reject(new Error(String(event.data))));
        thread.onerror = (event) => reject(new Error(event.message || "a thread worker failed to start"));
        thread.postMessage({ ...start, port: channel.port2 }, [channel.port2]);
      });
    }),
  );
  self.postMessage({ threadPorts: ports }, ports);
  lab.thread_pool_build(threads);
}

let lab = null;
let note = "";
const { threads, why } = threadCount();
if (threads > 1) {
  const noWebGpu = await withoutWebGpu();
  if (noWebGpu) {
    try {
      const threaded = await import("../pkg/rosetta_lab_threads.js");
      await threaded.default();
      await startThreads(threaded, threads);
      // For the end-to-end test, which cannot script a thread blocked in the pool: one of them panics.
      self.labSimulateThreadPanic = () => threaded.thread_pool_simulate_panic();
      lab = threaded;
      note = `wasm threads on a cross-origin isolated page; no WebGPU: ${noWebGpu}`;
    } catch (error) {
      note = `the threaded module did not start (${error}), so one thread`;
    }
  } else {
    note = "the WebGPU build (this browser has a GPU adapter), whose CPU path runs one thread";
  }
} else {
  note = why;
}
if (!lab) {
  lab = await import("../pkg/rosetta_lab.js");
  await lab.default();
}
lab.worker_start(queued, note);
