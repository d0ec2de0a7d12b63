// End-to-end tests of the web lab in headless Debian Chromium, driven by playwright-core the way a
// person uses the page: type, pick, click, move sliders, read what is shown. Run by
// scripts/test-lab.sh, which builds the page and the tiny model first.
//
//   node tests/browser/lab.e2e.mjs ROSETTA_BIN MODEL_DIR EXTENDED_DIR ARTIFACT_DIR
//
// Starts `rosetta lab` (the real server) on a free port, then runs the rooms on WebGPU
// (SwiftShader), on the CPU fallback (no WebGPU), the course links and bad input. Screenshots
// and the measured numbers (timings.json) go to ARTIFACT_DIR. Exit code 1 on any failure.
import { spawn } from "node:child_process";
import { closeSync, ftruncateSync, mkdirSync, openSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createRequire } from "node:module";

const require = createRequire(new URL("../../web/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const [rosetta, modelDir, extendedDir, artifacts, ...rest] = process.argv.slice(2);
const extraLabArgs = rest;
mkdirSync(artifacts, { recursive: true });
const TIMEOUT = Number(process.env.LAB_TEST_TIMEOUT_MS || 240_000);
const timings = {};
const failures = [];

const BASE_FLAGS = ["--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"];
const WEBGPU_FLAGS = ["--enable-unsafe-webgpu", "--enable-unsafe-swiftshader"];

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function startServer() {
  const args = ["lab", "--model", modelDir, "--extended-tokenizer", extendedDir, "--port", "0", "--no-open",
    "--out", join(artifacts, "site"), ...extraLabArgs];
  const server = spawn(rosetta, args, { stdio: ["ignore", "pipe", "inherit"] });
  const url = await new Promise((resolve, reject) => {
    let seen = "";
    server.stdout.on("data", (chunk) => {
      seen += chunk;
      const match = seen.match(/Rosetta lab at (http:\/\/\S+)/);
      if (match) resolve(match[1]);
    });
    server.on("exit", (code) => reject(new Error(`rosetta lab exited with ${code} before serving`)));
    setTimeout(() => reject(new Error("rosetta lab did not start in 120 s")), 120_000);
  });
  return { server, url };
}

async function openPage(browser, url, name) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  page.consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") page.consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => page.consoleErrors.push(String(e)));
  // Nothing may leave the origin: any request elsewhere fails the test.
  page.on("request", (r) => {
    if (!r.url().startsWith(url.replace(/\/$/, "")) && !r.url().startsWith("data:")) {
      failures.push(`${name}: request to another origin: ${r.url()}`);
    }
  });
  page.setDefaultTimeout(TIMEOUT);
  return page;
}

const text = (page, id) => page.getByTestId(id).innerText();

let failureShots = 0;

async function waitForText(page, id, pattern, timeout = TIMEOUT) {
  try {
    await page.waitForFunction(([id, source]) => {
      const el = document.querySelector(`[data-testid="${id}"]`);
      return el && new RegExp(source).test(el.innerText);
    }, [id, pattern.source], { timeout });
  } catch (error) {
    // Say what the page showed instead: its alerts, the element, the console.
    const alerts = await page.locator('[role="alert"]').allInnerTexts().catch(() => []);
    const shown = await page.getByTestId(id).innerText().catch(() => "(missing)");
    await page.screenshot({ path: join(artifacts, `failure-${++failureShots}.png`), fullPage: true }).catch(() => {});
    throw new Error(`waiting for ${id} to match ${pattern}: it shows "${shown}"; alerts: ${JSON.stringify(alerts)}; console: ${JSON.stringify(page.consoleErrors)}`);
  }
  return text(page, id);
}

async function setRange(page, id, value) {
  await page.getByTestId(id).evaluate((el, v) => {
    el.value = String(v);
    el.dispatchEvent(new Event("input", { bubbles: true }));
    el.dispatchEvent(new Event("change", { bubbles: true }));
  }, value);
}

async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

async function waitForModel(page) {
  const status = await waitForText(page, "model-status", /loaded in [\d.]+ s/);
  return parseFloat(status.match(/loaded in ([\d.]+) s/)[1]);
}

async function measureSpeed(page) {
  await page.getByTestId("measure-speed").click();
  const shown = await waitForText(page, "forward-speed", /tokens\/s|failed/);
  check(/forward: [\d.]+ tokens\/s .*decode: [\d.]+ tokens\/s/.test(shown), `speed measurement: ${shown}`);
  return parseFloat(shown.match(/forward: ([\d.]+)/)[1]);
}

async function firstRender(page) {
  const shown = await waitForText(page, "first-render", /first render at \d+ ms/);
  return parseFloat(shown.match(/at (\d+) ms/)[1]);
}

async function tokenizerRoom(page, label) {
  await page.getByTestId("tab-tokenizer").click();
  await page.getByTestId("tokenizer-lang").selectOption("hu");
  const sentence = "A magyar nyelv szép, és a gépek is megtanulhatják.";
  await page.getByTestId("tokenizer-text").fill(sentence);
  await page.waitForFunction(() => document.querySelector('[data-testid="tokens-extended-count"]'));
  const base = parseInt(await text(page, "tokens-base-count"), 10);
  const extended = parseInt(await text(page, "tokens-extended-count"), 10);
  check(base > 0 && extended > 0 && extended < base, `${label}: extended tokenizer should need fewer tokens (base ${base}, extended ${extended})`);
  check((await page.locator('[data-testid="tokens-extended"] .tok.new').count()) > 0, `${label}: no new token highlighted`);
  const shownText = await page.locator('[data-testid="tokens-base"] .tokens').innerText();
  check(shownText.replace(/\s+/g, "").length > 10, `${label}: base tokens not shown`);
  // Byte pieces of "é" and "á" show the character, marked partial, never the replacement sign.
  check(!shownText.includes("\uFFFD"), `${label}: a token shows as U+FFFD: ${shownText}`);
  const partial = await page.locator('[data-testid="tokens-base"] .tok.partial').allInnerTexts();
  check(partial.length > 0 && partial.every((t) => /[éá]/.test(t)), `${label}: byte pieces not joined to their characters: ${partial}`);
  const chart = await page.getByTestId("fertility-chart").innerHTML();
  check(chart.includes("<svg") && chart.includes("hu") && chart.includes("tokens per character"), `${label}: no fertility chart`);
  const premiums = await waitForText(page, "token-premiums", /against English: .*hu \d+\.\d+×/);
  await shot(page, `${label}-tokenizer`);
  return { base, extended, premiums };
}

async function shiftRoom(page, label) {
  await page.getByTestId("tab-shift").click();
  const band = await waitForText(page, "shift-status", /Band: shift toward English at layer \d+/);
  check((await page.getByTestId("distance-chart").innerHTML()).includes("<svg"), `${label}: no distance chart`);
  await page.getByTestId("shift-lang").selectOption("hu");
  await setRange(page, "shift-strength", 1);
  await waitForText(page, "shift-strength-value", /1\.00/);
  const bpc = await waitForText(page, "shift-bpc", /unshifted → [\d.]+ with the shift/);
  const [, before, after] = bpc.match(/([\d.]+) unshifted → ([\d.]+)/);
  check(before !== after, `${label}: the shift changed nothing (${bpc})`);
  const scatter = await page.getByTestId("shift-scatter").innerHTML();
  check(scatter.includes("hu shifted ×1.00"), `${label}: the scatter does not show the shifted sentences`);
  check((await page.locator('[data-testid="next-shifted"] li').count()) === 8, `${label}: no next-token list`);
  check(page.url().includes("strength=1"), `${label}: the link does not carry the slider (${page.url()})`);
  await shot(page, `${label}-shift`);
  return { band, bpc };
}

async function featuresRoom(page, label) {
  await page.getByTestId("tab-features").click();
  await waitForText(page, "features-status", /layers × \d+ dimensions/);
  for (const id of ["heatmap-translation", "heatmap-monolingual"]) {
    check((await page.getByTestId(id).innerHTML()).includes("<svg"), `${label}: no ${id}`);
  }
  await setRange(page, "sparsity", 0.5);
  await waitForText(page, "features-status", /Pruned to 50% sparsity/);
  const cells = await page.locator('[data-testid="pruned-bpc"] tr td:nth-child(3)').allInnerTexts();
  check(cells.length >= 3 && cells.every((c) => /^[\d.]+$/.test(c)), `${label}: pruned bits/char missing: ${cells}`);
  check((await page.getByTestId("pruned-chart").innerHTML()).includes("50% pruned"), `${label}: no pruned bars`);
  await shot(page, `${label}-features`);
  return cells;
}

async function distillRoom(page, label) {
  await page.getByTestId("tab-distill").click();
  await page.getByTestId("distill-start").click();
  await waitForText(page, "distill-step", /step (1[2-9]|[2-9]\d|\d{3,})/);
  await page.getByTestId("distill-pause").click();
  const rows = await page.locator('[data-testid="distill-samples"] tr').count();
  check(rows >= 3, `${label}: no student samples (${rows} rows)`);
  check((await page.getByTestId("distill-chart").innerHTML()).includes("held out"), `${label}: no loss chart`);
  // The step in flight finishes, then the loop stops and says so.
  await waitForText(page, "distill-status", /Paused at step \d+/);
  const paused = await text(page, "distill-step");
  await page.waitForTimeout(1500);
  check((await text(page, "distill-step")) === paused, `${label}: Pause did not stop training`);
  const status = await text(page, "distill-status");
  await shot(page, `${label}-distill`);
  await page.getByTestId("distill-reset").click();
  await waitForText(page, "distill-step", /^step 0$/);
  return { paused, status };
}

async function courseMode(page, url, label) {
  await page.getByTestId("course-toggle").click();
  await waitForText(page, "course-title", /^1\./);
  await page.getByTestId("course-next").click();
  await waitForText(page, "course-title", /^2\./);
  check(await page.getByTestId("room-shift").isVisible(), `${label}: course step 2 did not open the shift room`);
  check(page.url().includes("course=1"), `${label}: the link lacks the course step`);
  // A teacher's link opens straight on step 3 with the slider set.
  await page.goto(`${url}?room=shift&course=2&strength=1&lang=hu`);
  await waitForText(page, "course-title", /^3\./);
  await waitForText(page, "shift-strength-value", /1\.00/);
  await shot(page, `${label}-course`);
}

// A 1-KB GGUF header claiming a model of 4·10⁹ layers (GGUF v3: magic, version, tensor and
// key counts, then typed key/value pairs; 4 = u32, 8 = string).
function lyingGguf() {
  const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); return b; };
  const u64 = (v) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); return b; };
  const str = (s) => Buffer.concat([u64(Buffer.byteLength(s)), Buffer.from(s)]);
  const kv = [["general.architecture", 8, str("llama")], ["llama.block_count", 4, u32(4_000_000_000)],
    ["llama.embedding_length", 4, u32(64)], ["llama.feed_forward_length", 4, u32(128)],
    ["llama.attention.head_count", 4, u32(4)], ["llama.vocab_size", 4, u32(300)]];
  const parts = [Buffer.from("GGUF"), u32(3), u64(0), u64(kv.length)];
  for (const [key, type, value] of kv) parts.push(str(key), u32(type), value);
  return Buffer.concat(parts);
}

// Picks `path` and returns the error the page shows (matching `pattern`, which the previous
// error does not) and how long it took to show it.
async function pickAndTime(page, path, pattern) {
  const started = Date.now();
  await page.getByTestId("model-file").setInputFiles(path);
  const error = await waitForText(page, "model-error", pattern);
  return { error, ms: Date.now() - started };
}

// The same tiny model in Q8_0 blocks (LAB_QUANTIZED_MODEL, written by scripts/test-lab.sh),
// picked on the CPU path: kept quantized and run by the simd128 tile, with bits per character
// within Q8_0's rounding of the f32 model's.
// A fresh page, so that no room shows a number of the served f32 model before the pick.
async function quantizedModel(browser, url, f32Bpc) {
  const label = "cpu-q8_0";
  const gguf = process.env.LAB_QUANTIZED_MODEL;
  check(gguf, "LAB_QUANTIZED_MODEL is not set (scripts/test-lab.sh exports the Q8_0 model)");
  const page = await openPage(browser, url, label);
  await page.goto(url);
  await waitForModel(page);
  await page.getByTestId("model-file").setInputFiles(gguf);
  const status = await waitForText(page, "model-status", /tiny-q8_0\.gguf — loaded in [\d.]+ s/);
  check(/projections kept quantized .*quantized matmul: wasm-simd128/.test(status), `${label}: not kept quantized: ${status}`);
  const shift = await shiftRoom(page, label);
  const first = (s) => Number((s.match(/[\d]+\.[\d]+/) || [NaN])[0]);
  const [q, f] = [first(shift.bpc), first(f32Bpc)];
  check(Math.abs(q - f) <= 0.05, `${label}: bits/char ${q} on Q8_0 vs ${f} on f32`);
  const speed = await measureSpeed(page);
  await shot(page, `${label}-loaded`);
  check(page.consoleErrors.length === 0, `${label}: console errors: ${page.consoleErrors.join(" | ")}`);
  await page.close();
  return { status, bpc: shift.bpc, forward_tokens_per_s: speed };
}

async function badInput(browser, url) {
  const page = await openPage(browser, url, "bad-input");
  await page.goto(url);
  await waitForModel(page);
  const junk = join(artifacts, "not-a-model.txt");
  writeFileSync(junk, "this is not a model\n");
  await page.getByTestId("model-file").setInputFiles(junk);
  const error = await waitForText(page, "model-error", /is not a model/);
  // The page keeps working: the loaded model is still there and the rooms still answer.
  await page.getByTestId("tab-tokenizer").click();
  await page.getByTestId("tokenizer-text").fill("still working");
  await waitForText(page, "tokens-base-count", /^\d+$/);
  await shot(page, "bad-input-not-a-model");
  // A 1-KB GGUF claiming 4·10⁹ layers: refused from its header, at once.
  const layers = join(artifacts, "four-billion-layers.gguf");
  writeFileSync(layers, lyingGguf());
  const lying = await pickAndTime(page, layers, /num_hidden_layers/);
  check(/four-billion-layers\.gguf/.test(lying.error) && /4000000000/.test(lying.error), `the lying GGUF's error names neither file nor count: ${lying.error}`);
  // A 3-GiB file (sparse: no disk used) is refused from its size alone; nothing is read.
  const huge = join(artifacts, "huge-model.gguf");
  const fd = openSync(huge, "w");
  ftruncateSync(fd, 3 * 2 ** 30);
  closeSync(fd);
  const tooBig = await pickAndTime(page, huge, /Nothing was read/);
  rmSync(huge);
  check(/huge-model\.gguf: 3\.0 GiB/.test(tooBig.error), `the size check does not name the file: ${tooBig.error}`);
  await page.getByTestId("tab-tokenizer").click();
  await page.getByTestId("tokenizer-text").fill("still working after two refusals");
  await waitForText(page, "tokens-base-count", /^\d+$/);
  // A trap of the module (out of memory, a panic) leaves a page that says so and reloads.
  // A panic's hook leaves its message on the root element before the trap; the notice shows it.
  await page.evaluate(() => {
    document.documentElement.dataset.labPanic = "panicked at a simulated place";
    queueMicrotask(() => { throw new WebAssembly.RuntimeError("unreachable"); });
  });
  const crashed = await waitForText(page, "lab-crashed", /The lab stopped: panicked at a simulated place\.[\s\S]*Reload the lab/);
  await shot(page, "bad-input-trapped");
  await page.getByText("Reload the lab").click();
  await waitForModel(page);
  check(await page.getByTestId("lab-crashed").count() === 0, "the reloaded page still shows the crash notice");
  // A model larger than the adapter allows (simulated 1 KiB buffer limit) is refused up front.
  await page.goto(`${url}?limit_mb=0.001`);
  const tooLarge = await waitForText(page, "model-error", /too large for the adapter|loaded in/);
  check(/too large for the adapter/.test(tooLarge), `too-large model was not refused on WebGPU: ${tooLarge}`);
  await page.getByTestId("tab-shift").click();
  check(await page.getByTestId("room-shift").isVisible(), "the page stopped working after refusing a model");
  await shot(page, "bad-input-too-large");
  await page.close();
  return { error, tooLarge, lying_gguf: lying, three_gib_pick: tooBig, trap_notice: crashed };
}

async function run() {
  const { server, url } = await startServer();
  console.log(`lab served at ${url}`);
  try {
    // 1. WebGPU on SwiftShader.
    const gpu = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: [...BASE_FLAGS, ...WEBGPU_FLAGS] });
    try {
      const page = await openPage(gpu, url, "webgpu");
      await page.goto(url);
      timings.webgpu_first_render_ms = await firstRender(page);
      const backend = await waitForText(page, "backend", /WebGPU|CPU/);
      check(/^WebGPU/.test(backend), `expected WebGPU on SwiftShader, got: ${backend}`);
      timings.webgpu_adapter = backend;
      timings.webgpu_load_seconds = await waitForModel(page);
      timings.webgpu_tokens = await tokenizerRoom(page, "webgpu");
      timings.webgpu_shift = await shiftRoom(page, "webgpu");
      timings.webgpu_pruned_bpc = await featuresRoom(page, "webgpu");
      timings.webgpu_distill = await distillRoom(page, "webgpu");
      timings.webgpu_forward_tokens_per_s = await measureSpeed(page);
      await courseMode(page, url, "webgpu");
      check(page.consoleErrors.length === 0, `webgpu: console errors: ${page.consoleErrors.join(" | ")}`);
      await page.close();
      timings.bad_input = await badInput(gpu, url);
    } finally {
      await gpu.close();
    }
    // 2. No WebGPU at all: the CPU fallback, said on the page.
    const cpu = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: BASE_FLAGS });
    try {
      const page = await openPage(cpu, url, "cpu");
      await page.goto(url);
      timings.cpu_first_render_ms = await firstRender(page);
      const backend = await waitForText(page, "backend", /WebGPU|CPU/);
      check(/^CPU \(wasm\)/.test(backend), `expected the CPU fallback without WebGPU, got: ${backend}`);
      timings.cpu_reason = backend;
      timings.cpu_load_seconds = await waitForModel(page);
      timings.cpu_tokens = await tokenizerRoom(page, "cpu");
      timings.cpu_shift = await shiftRoom(page, "cpu");
      timings.cpu_pruned_bpc = await featuresRoom(page, "cpu");
      timings.cpu_forward_tokens_per_s = await measureSpeed(page);
      check(page.consoleErrors.length === 0, `cpu: console errors: ${page.consoleErrors.join(" | ")}`);
      // The same model on both backends must tell the same story (f32 sums in another order).
      const numbers = (s) => (s.match(/[\d]+\.[\d]+/g) || []).map(Number);
      const pairs = [[timings.webgpu_shift.bpc, timings.cpu_shift.bpc], [timings.webgpu_pruned_bpc.join(" "), timings.cpu_pruned_bpc.join(" ")]];
      for (const [gpuText, cpuText] of pairs) {
        const [g, c] = [numbers(gpuText), numbers(cpuText)];
        check(g.length > 0 && g.length === c.length && g.every((v, i) => Math.abs(v - c[i]) <= 0.01), `WebGPU and CPU disagree: ${gpuText} vs ${cpuText}`);
      }
      await page.close();
      timings.cpu_quantized = await quantizedModel(cpu, url, timings.cpu_shift.bpc);
    } finally {
      await cpu.close();
    }
  } finally {
    server.kill();
  }
}

try {
  await run();
} catch (error) {
  failures.push(String(error.stack || error));
}
writeFileSync(join(artifacts, "timings.json"), JSON.stringify(timings, null, 2));
console.log(JSON.stringify(timings, null, 2));
if (failures.length) {
  console.error(`FAILED:\n${failures.join("\n")}`);
  process.exit(1);
}
console.log(`lab end-to-end: all rooms passed on WebGPU and on the CPU fallback; screenshots in ${artifacts}`);
