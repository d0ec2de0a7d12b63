// The lab's worker: all model work runs here (crates/lab, module rosetta_lab), off the page's main
// thread. The model's module is downloaded and compiled here, while the page (its own small
// module, rosetta_lab_page) is already on screen; requests that arrive meanwhile wait in a queue
// and are handed to the Rust side with it. A failure to start is the worker's error event on the
// page, which then says the lab stopped.
import init, { worker_start } from "../pkg/rosetta_lab.js";

const queued = [];
self.onmessage = (event) => queued.push(event.data);
await init();
worker_start(queued);
