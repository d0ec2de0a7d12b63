// The lab's worker: all model work runs here (crates/lab/src/worker), off the page's main thread.
// The page sends the WebAssembly module it already compiled as the first message, so the module
// is downloaded and compiled once; requests that arrive while it is instantiated here wait in a
// queue and are handed to the Rust side with it.
import init, { worker_start } from "../pkg/rosetta_lab.js";

const queued = [];
let starting = false;

self.onmessage = async (event) => {
  if (starting || !(event.data && event.data.module instanceof WebAssembly.Module)) {
    queued.push(event.data);
    return;
  }
  starting = true;
  // A failure here is the worker's error event on the page, which says the lab stopped.
  await init({ module_or_path: event.data.module });
  worker_start(queued);
};
