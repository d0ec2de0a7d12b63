// Benchmark (not a test) of the web lab on a real model in headless Debian Chromium: time to first
// render, model load time and forward tokens/s (batch 1 × 64, the page's "Measure speed" button),
// on WebGPU (SwiftShader here; a real GPU elsewhere) and on the CPU wasm fallback. With
// LAB_BENCH_ROOMS=1 the CPU modes also time the rooms as a visitor meets them: the geometry, a
// shift-strength change until bits/char and the next-token view are updated, a sparsity change
// until the pruned bits/char are shown, distillation steps per second, and the page's longest
// main-thread task meanwhile.
//
// Modes tjs-q8, tjs-q4 (and -1 for one thread) run the peer, transformers.js, on the same model in
// the same browser and the same run (scripts/peers/transformersjs_bench.mjs; the library and the
// exported model from `scripts/setup-transformersjs.sh MODEL.gguf`, whose printed directory goes in
// LAB_BENCH_TJS).
//
//   node tests/browser/lab.bench.mjs ROSETTA_BIN OUT_JSON [rosetta lab args...]
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { createRequire } from "node:module";
import { measureTransformersJs } from "../../scripts/peers/transformersjs_bench.mjs";

const require = createRequire(new URL("../../web/package.json", import.meta.url));
const { chromium } = require("playwright-core");
const [rosetta, outJson, ...labArgs] = process.argv.slice(2);
const BASE = ["--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"];
// Long compute passes on a software adapter trip the GPU watchdog, which kills the GPU process.
const WEBGPU = ["--enable-unsafe-webgpu", "--enable-unsafe-swiftshader", "--disable-gpu-watchdog"];
// Per step; a step that does not finish is recorded as such rather than hanging the benchmark.
const LIMIT = Number(process.env.LAB_BENCH_STEP_MS || 600_000);

const server = spawn(rosetta, ["lab", "--port", "0", "--no-open", "--out", mkdtempSync(join(tmpdir(), "rosetta-lab-bench-")), ...labArgs], { stdio: ["ignore", "pipe", "inherit"] });
const url = await new Promise((resolve, reject) => {
  let seen = "";
  server.stdout.on("data", (c) => { seen += c; const m = seen.match(/Rosetta lab at (http:\/\/\S+)/); if (m) resolve(m[1]); });
  server.on("exit", (code) => reject(new Error(`rosetta lab exited with ${code}`)));
});

async function rooms(page, until, read) {
  const out = {};
  const since = await page.evaluate(() => performance.now());
  await page.evaluate(() => {
    window.__longest = 0;
    new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__longest = Math.max(window.__longest, e.duration); }).observe({ type: "longtask" });
  });
  let t = Date.now();
  await page.getByTestId("tab-shift").click();
  await until("shift-status", /Band:/);
  out.geometry_seconds = (Date.now() - t) / 1000;
  await until("shift-bpc", /with the shift/);
  const setRange = (id, v) => page.getByTestId(id).evaluate((el, v) => { el.value = String(v); el.dispatchEvent(new Event("change", { bubbles: true })); }, v);
  t = Date.now();
  await setRange("shift-strength", 1);
  await until("next-shifted", /With the shift ×1\.00/);
  out.strength_change_next_token_seconds = (Date.now() - t) / 1000;
  await until("shift-bpc", /with the shift ×1\.00/);
  out.strength_change_bits_per_char_seconds = (Date.now() - t) / 1000;
  await page.waitForFunction(() => document.querySelector('[data-testid="shift-scatter"]')?.innerHTML.includes("shifted ×1.00"));
  out.strength_change_scatter_seconds = (Date.now() - t) / 1000;
  out.shift_bpc = await read("shift-bpc");
  t = Date.now();
  await page.getByTestId("tab-features").click();
  await until("features-status", /layers × \d+ dimensions/);
  out.features_seconds = (Date.now() - t) / 1000;
  t = Date.now();
  await setRange("sparsity", 0.5);
  await until("features-status", /Pruned to 50%/);
  out.sparsity_change_seconds = (Date.now() - t) / 1000;
  await page.getByTestId("tab-distill").click();
  t = Date.now();
  await page.getByTestId("distill-start").click();
  await until("distill-step", /step [1-9]/);
  out.teacher_seconds = (Date.now() - t) / 1000;
  const first = parseInt((await read("distill-step")).match(/\d+/)[0], 10);
  t = Date.now();
  await page.waitForTimeout(10_000);
  const last = parseInt((await read("distill-step")).match(/\d+/)[0], 10);
  out.distill_steps_per_second = (last - first) / ((Date.now() - t) / 1000);
  await page.getByTestId("distill-pause").click();
  out.longest_main_thread_task_ms = Math.round(await page.evaluate(() => window.__longest));
  out.measured_from_ms = Math.round(since);
  return out;
}

async function measure(name, flags, query) {
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: [...BASE, ...flags] });
  const page = await browser.newPage();
  page.setDefaultTimeout(LIMIT);
  const read = (id) => page.getByTestId(id).innerText();
  const until = (id, re) => page.waitForFunction(([id, s]) => new RegExp(s).test(document.querySelector(`[data-testid="${id}"]`)?.innerText ?? ""), [id, re.source], { timeout: LIMIT });
  const started = Date.now();
  await page.goto(url + query);
  await until("first-render", /first render at/);
  const result = { backend: null, first_render_ms: parseFloat((await read("first-render")).match(/at (\d+)/)[1]) };
  await until("backend", /WebGPU|CPU/);
  result.backend = await read("backend");
  // Loaded, or an error shown: whichever comes first.
  await page.waitForFunction(() => /loaded in/.test(document.querySelector('[data-testid="model-status"]')?.innerText ?? "")
    || document.querySelector('[data-testid="model-error"]'), null, { timeout: LIMIT });
  const error = (await page.getByTestId("model-error").count()) ? await read("model-error") : null;
  if (error) {
    result.error = error;
  } else {
    result.model_status = await read("model-status");
    result.load_seconds = parseFloat(result.model_status.match(/loaded in ([\d.]+) s/)[1]);
    await page.getByTestId("measure-speed").click();
    try {
      await until("forward-speed", /tokens\/s|failed/);
      result.forward = await read("forward-speed");
    } catch {
      result.forward = `did not finish in ${LIMIT / 1000} s (the page still showed "${await read("forward-speed")}")`;
    }
  }
  if (!error && process.env.LAB_BENCH_ROOMS === "1" && query.includes("backend=cpu")) {
    try {
      result.rooms = await rooms(page, until, read);
    } catch (e) {
      result.rooms = { error: String(e) };
    }
  }
  result.wall_seconds = (Date.now() - started) / 1000;
  await browser.close();
  console.log(name, JSON.stringify(result));
  return result;
}

const results = { url, date: new Date().toISOString() };
// cpu: a quantized model kept in its blocks (the simd128 tile), on the threaded module when the
// page is cross-origin isolated (as `rosetta lab` serves it: every core the browser reports);
// cpu-1: the same on one thread (`threads=1`: the main module's CPU path); cpu-f32: the model
// dequantised at load (`?precision=f32`), as every version before kept it.
const modes = (process.env.LAB_BENCH_MODES || "webgpu,cpu,cpu-f32").split(",");
try {
  if (modes.includes("webgpu")) results.webgpu = await measure("webgpu", WEBGPU, "?backend=webgpu");
  // webgpu-f32: the same model dequantised at load, as WebGPU held it before the WGSL kernel.
  if (modes.includes("webgpu-f32")) results.webgpu_f32 = await measure("webgpu-f32", WEBGPU, "?backend=webgpu&precision=f32");
  // No choice in the link: the worker's probe picks (and the page says which, and why).
  if (modes.includes("probe")) results.probe = await measure("probe", WEBGPU, "");
  if (modes.includes("cpu")) results.cpu = await measure("cpu", WEBGPU, "?backend=cpu");
  if (modes.includes("cpu-1")) results.cpu_1 = await measure("cpu-1", WEBGPU, "?backend=cpu&threads=1");
  if (modes.includes("cpu-f32")) results.cpu_f32 = await measure("cpu-f32", WEBGPU, "?backend=cpu&precision=f32");
  // transformers.js: its WebAssembly default (q8: int8 weights, activations quantized per tensor
  // at run time) and 4-bit blocks (q4), on two threads (as many as the lab's cpu mode uses here)
  // and on one.
  const model = labArgs.includes("--model") ? labArgs[labArgs.indexOf("--model") + 1] : null;
  for (const mode of modes.filter((m) => m.startsWith("tjs-"))) {
    const [, dtype, one] = mode.split("-");
    if (!process.env.LAB_BENCH_TJS || !model) throw new Error(`mode ${mode} needs LAB_BENCH_TJS (scripts/setup-transformersjs.sh) and --model`);
    const threads = one === "1" ? 1 : 2;
    const result = await measureTransformersJs({ chromium, launchArgs: BASE, toolsDir: process.env.LAB_BENCH_TJS, model: basename(model, ".gguf"), dtype, threads, timeoutMs: LIMIT });
    console.log(mode, JSON.stringify(result));
    results[mode.replaceAll("-", "_")] = result;
  }
} finally {
  server.kill();
}
writeFileSync(outJson, JSON.stringify(results, null, 2));
