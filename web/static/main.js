// Starts the lab's page (its own small wasm module, rosetta_lab_page, built by
// scripts/build-lab.sh into pkg/): compiled while it downloads, then mounted; the page starts the
// worker that loads the model's module and runs the model (static/worker.js). A
// failure to start — an old browser without WebAssembly, a missing build — is said on the page
// instead of a blank screen. So is a trap later on (the module ran out of memory or panicked), in
// the page or in its worker: every later call into a trapped module fails, so the page says it
// stopped — with the panic's message when there was one — and offers a reload instead of looking
// alive.
import init, { mount_lab } from "../pkg/rosetta_lab_page.js";

function notice(text, testId) {
  const p = document.createElement("p");
  p.className = "error";
  p.setAttribute("role", "alert");
  p.setAttribute("data-testid", testId);
  p.textContent = text;
  document.body.prepend(p);
  return p;
}

function showCrash(error) {
  if (document.querySelector("[data-testid=lab-crashed]")) return;
  // A panic leaves its message on the root element (the panic hook in crates/lab/src/ui/mod.rs);
  // a trap without one is most likely memory.
  const panic = document.documentElement.dataset.labPanic;
  const cause = panic
    ? `${panic}. `
    : `${error}. It most likely ran out of memory (a page gives WebAssembly at most 4 GiB). `;
  const p = notice(`The lab stopped: ${cause}The page cannot continue; nothing you picked left this computer. `, "lab-crashed");
  p.classList.add("crashed");
  const reload = document.createElement("a");
  reload.href = "";
  reload.textContent = "Reload the lab";
  p.append(reload);
}

const isTrap = (error) => error instanceof WebAssembly.RuntimeError;
// The worker's end is reported by the page's module (crates/lab/src/ui/worker_client.rs).
window.addEventListener("lab-crashed", (event) => showCrash(event.detail));
window.addEventListener("error", (event) => isTrap(event.error) && showCrash(event.error));
window.addEventListener("unhandledrejection", (event) => isTrap(event.reason) && showCrash(event.reason));

init().then(() => mount_lab()).catch((error) => {
  notice(
    `The lab could not start: ${error}. Rebuild it with scripts/build-lab.sh, or use a browser with WebAssembly.`,
    "lab-start-failed",
  );
});
