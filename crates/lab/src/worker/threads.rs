//! rayon's pool on wasm threads, for the lab's threaded module (wasm32 built with `atomics`:
//! `scripts/build-lab.sh`). Each thread is a Web Worker (`static/thread.js`) that instantiates this
//! same module on this module's shared memory and then runs one of rayon's threads. The lab's
//! worker is the pool's thread 0 (`use_current_thread`): the model's parallel loops (the
//! quantized matmul's tasks, burn's CPU backend, the fused kernels), called on it, split their work
//! in place and run a share themselves, as the native CLI's do on its pool. Called from outside
//! the pool, every loop — a decoding step has hundreds — would be handed across threads with
//! the caller asleep until a woken thread finished: measured slower than one thread when
//! decoding. The worker blocks while it waits for a share (a worker may block, a page may not).
//!
//! Built here rather than taken from `wasm-bindgen-rayon`: that crate starts its threads from
//! `blob:` URLs, which the lab's Content-Security-Policy refuses (`worker-src` falls back to
//! `'self'`); `static/thread.js` is served from the lab's own origin instead.
//!
//! The handshake (`static/worker.js`): start `n − 1` thread workers, each sends "ready" once it
//! has instantiated the module and is about to call [`thread_pool_enter`]; then
//! [`thread_pool_build`] builds rayon's global pool of `n` on the lab's worker, whose spawn
//! handler queues one [`rayon::ThreadBuilder`] per other thread, and each thread worker takes one
//! from the queue and runs it for the page's lifetime.

#[cfg(not(target_feature = "atomics"))]
compile_error!("the lab's `threads` feature needs wasm32 built with atomics: build it with scripts/build-lab.sh");

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

use wasm_bindgen::prelude::*;

/// Threads of the pool waiting to be taken by a thread worker.
static WAITING: Mutex<VecDeque<rayon::ThreadBuilder>> = Mutex::new(VecDeque::new());
static ARRIVED: Condvar = Condvar::new();

/// This module, for the thread workers to instantiate (`WebAssembly.Module` can be posted).
#[wasm_bindgen]
pub fn thread_pool_module() -> JsValue {
    wasm_bindgen::module()
}

/// This module's shared memory, for the thread workers to instantiate the module on.
#[wasm_bindgen]
pub fn thread_pool_memory() -> JsValue {
    wasm_bindgen::memory()
}

/// Builds rayon's global pool of `threads` threads — the calling worker and `threads − 1` thread
/// workers — once every thread worker said it is ready.
#[wasm_bindgen]
pub fn thread_pool_build(threads: usize) -> Result<(), JsValue> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .use_current_thread()
        .spawn_handler(|thread| {
            WAITING.lock().map_err(|_| std::io::Error::other("the thread queue's lock is poisoned"))?.push_back(thread);
            ARRIVED.notify_one();
            Ok(())
        })
        .build_global()
        .map_err(|e| JsValue::from_str(&format!("rayon's pool could not be built: {e}")))
}

/// Called by a thread worker: waits for one of the pool's threads and runs it (returns only if
/// the pool shuts down, which the lab's never does).
#[wasm_bindgen]
pub fn thread_pool_enter() -> Result<(), JsValue> {
    let poisoned = |_| JsValue::from_str("the thread queue's lock is poisoned");
    let thread = {
        let mut waiting = WAITING.lock().map_err(poisoned)?;
        loop {
            if let Some(thread) = waiting.pop_front() {
                break thread;
            }
            waiting = ARRIVED.wait(waiting).map_err(poisoned)?;
        }
    };
    thread.run();
    Ok(())
}

/// For the end-to-end test: a job that panics on one of the pool's other threads, the path a real
/// panic or trap in one takes to the page (the thread's own port: the worker is blocked in the
/// pool while its threads compute). Nothing else can provoke it from outside, since a thread
/// waiting in the pool runs no script. `static/worker.js` exposes it on the worker's scope only.
#[wasm_bindgen]
pub fn thread_pool_simulate_panic() {
    fn on_another_thread() {
        if rayon::current_thread_index() == Some(0) {
            // The worker took the job itself while waiting for a share of its own: hand it on.
            rayon::spawn(on_another_thread);
            return;
        }
        panic!("a simulated panic in a thread of the pool");
    }
    rayon::spawn(on_another_thread);
}

/// Threads in rayon's pool (1 when it was never built).
pub fn count() -> usize {
    rayon::current_num_threads()
}
