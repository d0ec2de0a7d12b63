// transformers.js, the browser peer of the lab's "Measure speed": SmolLM2 exported to ONNX (the
// same GGUF, its weights re-quantized to 4 bits in blocks of 32 by onnxruntime-genai's model
// builder: scripts/setup-transformersjs.sh) and run by @huggingface/transformers on
// onnxruntime-web's WebAssembly backend in the same headless Chromium as the lab
// (tests/browser/lab.bench.mjs, modes `tjs` and `tjs-1`).
//
// Serves transformersjs_page.html, the library, onnxruntime-web's files and the model from one
// origin with the headers that make a page cross-origin isolated (onnxruntime-web's threads need
// SharedArrayBuffer, as the lab's do).
import { createServer } from "node:http";
import { createReadStream, statSync } from "node:fs";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".json": "application/json" };

/** Serves `routes` (URL prefix → directory) on 127.0.0.1; resolves to the server and its origin. */
function serve(routes) {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    const prefix = Object.keys(routes).find((p) => path.startsWith(p));
    const file = prefix && normalize(join(routes[prefix], path.slice(prefix.length)));
    let size = -1;
    try {
      if (file && file.startsWith(routes[prefix])) size = statSync(file).isFile() ? statSync(file).size : -1;
    } catch { /* not found */ }
    if (size < 0) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, {
      "Content-Type": TYPES[extname(file)] || "application/octet-stream",
      "Content-Length": size,
      "Cross-Origin-Opener-Policy": "same-origin",
      "Cross-Origin-Embedder-Policy": "require-corp",
      "Cross-Origin-Resource-Policy": "same-origin",
    });
    createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({ server, origin: `http://127.0.0.1:${server.address().port}` })));
}

/**
 * One measurement on a fresh browser: `threads` onnxruntime-web threads, the model `model` under
 * `toolsDir/models` (as setup-transformersjs.sh leaves it) in transformers.js's `dtype` (`q4`:
 * `onnx/model_q4.onnx`; `q8`, its default on WebAssembly: `onnx/model_quantized.onnx`). Returns
 * what the page reports.
 */
export async function measureTransformersJs({ chromium, launchArgs, toolsDir, model, dtype, threads, timeoutMs }) {
  const lib = join(toolsDir, "node_modules");
  const { server, origin } = await serve({
    "/page/": fileURLToPath(new URL(".", import.meta.url)),
    "/tjs/": join(lib, "@huggingface/transformers/dist/"),
    "/ort/": join(lib, "onnxruntime-web/dist/"),
    "/models/": join(toolsDir, "models/"),
  });
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: launchArgs });
  const started = Date.now();
  try {
    const page = await browser.newPage();
    const messages = [];
    page.on("console", (m) => { if (m.type() === "error") messages.push(m.text()); });
    await page.goto(`${origin}/page/transformersjs_page.html?threads=${threads}&dtype=${dtype}&model=${encodeURIComponent(model)}`);
    await page.waitForFunction(() => window.__result, null, { timeout: timeoutMs });
    const result = await page.evaluate(() => window.__result);
    if (!result.ok && messages.length) result.console_errors = messages.slice(0, 5);
    result.wall_seconds = (Date.now() - started) / 1000;
    return result;
  } finally {
    await browser.close();
    server.close();
  }
}
