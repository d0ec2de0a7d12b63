// Runs the harness (src/lib.rs) in headless Debian Chromium, on the page's main thread (one
// thread, as the lab's single-thread module):
//   RUSTFLAGS='--cfg getrandom_backend="wasm_js" -C target-feature=+simd128' \
//     cargo build --release --target wasm32-unknown-unknown   (in this directory)
//   node bench.mjs target/wasm32-unknown-unknown/release/wasm_tile_bench.wasm
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(new URL("../../../web/package.json", import.meta.url));
const { chromium } = require("playwright-core");
const bytes = [...readFileSync(process.argv[2])];
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
try {
  const page = await browser.newPage();
  page.on("console", (m) => console.log(m.text()));
  await page.evaluate(async (bytes) => {
    const module = await WebAssembly.compile(new Uint8Array(bytes));
    // wasm-bindgen's imports are never called on these paths.
    const imports = {};
    for (const i of WebAssembly.Module.imports(module)) (imports[i.module] ??= {})[i.name] = () => { throw new Error(`import ${i.name}`); };
    const e = (await WebAssembly.instantiate(module, imports)).exports;
    console.log(`parity: worst difference ${e.parity().toExponential(2)} of the result's scale`);
    for (const m of [1, 16, 64, 256, 512]) for (const route of [0, 1]) {
      const reps = Math.max(2, Math.round(1024 / m));
      e.rows(m, route);
      const t = performance.now();
      for (let i = 0; i < reps; i++) e.rows(m, route);
      const seconds = (performance.now() - t) / 1000 / reps;
      console.log(`${m} rows × 1536 × 576, ${route ? "dequantise + f32 GEMM" : "integer tile"}: ${(m * 1536 * 576 / seconds / 1e9).toFixed(1)} GMAC/s`);
    }
    e.setup();
    for (let round = 0; round < 3; round++) {
      const t = performance.now();
      for (let i = 0; i < 10; i++) e.step();
      console.log(`decoding step's projections, round ${round}: ${(10000 / (performance.now() - t)).toFixed(1)} steps/s`);
    }
  }, bytes);
} finally {
  await browser.close();
}
