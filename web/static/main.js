// Starts the lab's wasm (built by scripts/build-lab.sh into pkg/). A failure to start — an old
// browser without WebAssembly, a missing build — is said on the page instead of a blank screen.
import init from "../pkg/rosetta_lab.js";

init().catch((error) => {
  const p = document.createElement("p");
  p.className = "error";
  p.setAttribute("role", "alert");
  p.textContent = `The lab could not start: ${error}. Rebuild it with scripts/build-lab.sh, or use a browser with WebAssembly.`;
  document.body.append(p);
});
