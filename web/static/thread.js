// One thread of the lab worker's rayon pool (the threaded module only; see static/worker.js and
// crates/lab/src/worker/threads.rs): instantiates the module on the worker's shared memory, says
// it is ready, then runs one of rayon's threads until the page closes.
//
// A panic here must reach the page directly: the lab's worker is blocked in the pool while its
// threads compute. The panic hook posts `{ panic }` to this scope, so postMessage is pointed at
// the page's port; a trap (out of memory, a panic's abort) ends `thread_pool_enter` with an
// exception, sent as `{ crashed }`.
self.onmessage = async ({ data: { module, memory, port } }) => {
  self.onmessage = null;
  const lab = await import("../pkg/rosetta_lab_threads.js");
  await lab.default({ module_or_path: module, memory });
  const toParent = self.postMessage.bind(self);
  self.postMessage = (message) => port.postMessage(message);
  toParent("ready");
  try {
    lab.thread_pool_enter();
  } catch (error) {
    port.postMessage({ crashed: `a thread of the lab's worker stopped (${error})` });
  }
};
