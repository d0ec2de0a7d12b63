// End-to-end tests of the web lab in headless Debian Chromium, driven by playwright-core the way a
// person uses the page: type, pick, click, move sliders, read what is shown. Run by
// scripts/test-lab.sh, which builds the page and the tiny model first.
//
//   node tests/browser/lab.e2e.mjs ROSETTA_BIN MODEL_DIR EXTENDED_DIR ARTIFACT_DIR
//
// Starts `rosetta lab` (the real server) on a free port, then runs the rooms on WebGPU
// (SwiftShader), on the CPU fallback (no WebGPU), the course links and bad input — and, when
// LAB_REAL_MODEL names a GGUF (scripts/test-lab.sh passes the default SmolLM2-135M), the rooms
// on that model on the CPU path. Every run checks that the page's main thread stays free while
// the worker computes: no task over 200 ms (PerformanceObserver "longtask"). Screenshots and the
// measured numbers (timings.json) go to ARTIFACT_DIR. Exit code 1 on any failure.
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
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

async function startServer(modelArgs = ["--model", modelDir, "--extended-tokenizer", extendedDir], siteName = "site") {
  const args = ["lab", ...modelArgs, "--port", "0", "--no-open", "--out", join(artifacts, siteName), ...extraLabArgs];
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
  // Every main-thread task over 50 ms, from the page's first moment.
  await page.addInitScript(() => {
    window.__longTasks = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__longTasks.push({ start: Math.round(e.startTime), ms: Math.round(e.duration) });
    }).observe({ type: "longtask", buffered: true });
  });
  return page;
}

const pageNow = (page) => page.evaluate(() => performance.now());

// The main thread stayed free since `since` (the model was ready): no task over 200 ms. Returns
// the longest task seen (ms).
async function checkResponsive(page, since, label) {
  const tasks = await page.evaluate((since) => window.__longTasks.filter((t) => t.start >= since), since);
  const over = tasks.filter((t) => t.ms > 200);
  check(over.length === 0, `${label}: main-thread tasks over 200 ms while the rooms computed: ${JSON.stringify(over)}`);
  return Math.max(0, ...tasks.map((t) => t.ms));
}

// How long a click on a room's tab takes to show the room (ms).
async function switchRoom(page, slug) {
  const started = Date.now();
  await page.getByTestId(`tab-${slug}`).click();
  await page.getByTestId(`room-${slug}`).waitFor({ state: "visible" });
  return Date.now() - started;
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

// Waits until element `id`'s HTML contains `needle`; on failure says what the page showed.
async function waitForHtml(page, id, needle) {
  try {
    await page.waitForFunction(([id, needle]) => document.querySelector(`[data-testid="${id}"]`)?.innerHTML.includes(needle), [id, needle]);
  } catch (error) {
    const alerts = await page.locator('[role="alert"]').allInnerTexts().catch(() => []);
    const shown = await page.getByTestId(id).innerHTML().catch(() => "(missing)");
    await page.screenshot({ path: join(artifacts, `failure-${++failureShots}.png`), fullPage: true }).catch(() => {});
    throw new Error(`waiting for ${id} to contain ${needle}: it holds ${shown.slice(0, 300)}…; alerts: ${JSON.stringify(alerts)}; console: ${JSON.stringify(page.consoleErrors)}`);
  }
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
  const shown = await measureSpeedText(page);
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
  // The slider moved twice in a row: only the second value's result is ever shown.
  await page.getByTestId("shift-scatter").evaluate((el) => {
    window.__shownStrengths = [];
    new MutationObserver(() => {
      const m = el.innerHTML.match(/shifted ×([\d.]+)/);
      if (m) window.__shownStrengths.push(m[1]);
    }).observe(el, { childList: true, subtree: true, characterData: true });
  });
  await setRange(page, "shift-strength", 0.5);
  await page.waitForTimeout(30);
  const moved = Date.now();
  await setRange(page, "shift-strength", 1);
  await waitForText(page, "shift-strength-value", /1\.00/);
  await waitForHtml(page, "shift-scatter", "hu shifted ×1.00");
  const updateMs = Date.now() - moved;
  const bpc = await waitForText(page, "shift-bpc", /unshifted → [\d.]+ with the shift/);
  const [, before, after] = bpc.match(/([\d.]+) unshifted → ([\d.]+)/);
  check(before !== after, `${label}: the shift changed nothing (${bpc})`);
  const shown = await page.evaluate(() => window.__shownStrengths);
  check(!shown.includes("0.50"), `${label}: the first of two slider moves was shown (${shown})`);
  check((await page.locator('[data-testid="next-shifted"] li').count()) === 8, `${label}: no next-token list`);
  check(page.url().includes("strength=1"), `${label}: the link does not carry the slider (${page.url()})`);
  await shot(page, `${label}-shift`);
  return { band, bpc, strength_update_ms: updateMs };
}

async function featuresRoom(page, label, expectProgress = false) {
  await page.getByTestId("tab-features").click();
  await waitForText(page, "features-status", /layers × \d+ dimensions/);
  for (const id of ["heatmap-translation", "heatmap-monolingual"]) {
    check((await page.getByTestId(id).innerHTML()).includes("<svg"), `${label}: no ${id}`);
  }
  const moved = Date.now();
  await setRange(page, "sparsity", 0.5);
  // On a real model pruning takes long enough that its progress must be on screen.
  if (expectProgress) await page.locator('[data-testid="room-features"] progress').waitFor({ state: "visible" });
  await waitForText(page, "features-status", /Pruned to 50% sparsity/);
  const pruneMs = Date.now() - moved;
  const cells = await page.locator('[data-testid="pruned-bpc"] tr td:nth-child(3)').allInnerTexts();
  check(cells.length >= 3 && cells.every((c) => /^[\d.]+$/.test(c)), `${label}: pruned bits/char missing: ${cells}`);
  check((await page.getByTestId("pruned-chart").innerHTML()).includes("50% pruned"), `${label}: no pruned bars`);
  await shot(page, `${label}-features`);
  return { cells, prune_ms: pruneMs };
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
  // The worker that holds the model dies (a panic's message first, then the trap): the page says
  // so and offers a reload, instead of rooms that wait forever.
  const [worker] = page.workers();
  check(worker, "the page runs no worker");
  await worker.evaluate(() => {
    self.postMessage({ panic: "panicked at a simulated place in the worker" });
    setTimeout(() => { throw new WebAssembly.RuntimeError("unreachable"); }, 0);
  });
  const workerCrashed = await waitForText(page, "lab-crashed", /The lab stopped: panicked at a simulated place in the worker\.[\s\S]*Reload the lab/);
  await shot(page, "bad-input-worker-crashed");
  await page.getByText("Reload the lab").click();
  await waitForModel(page);
  check(await page.getByTestId("lab-crashed").count() === 0, "the page reloaded after the worker crash still shows the notice");
  // A trap without a panic (what running out of memory looks like) names memory as the likely cause.
  await page.workers()[0].evaluate(() => setTimeout(() => { throw new WebAssembly.RuntimeError("memory access out of bounds"); }, 0));
  const workerOom = await waitForText(page, "lab-crashed", /The lab stopped: the worker that runs the model stopped .*most likely it ran out of memory/);
  await page.getByText("Reload the lab").click();
  await waitForModel(page);
  // A model larger than the adapter allows (simulated 1 KiB buffer limit) is refused up front.
  await page.goto(`${url}?backend=webgpu&limit_mb=0.001`);
  const tooLarge = await waitForText(page, "model-error", /too large for the adapter|loaded in/);
  check(/too large for the adapter/.test(tooLarge), `too-large model was not refused on WebGPU: ${tooLarge}`);
  await page.getByTestId("tab-shift").click();
  check(await page.getByTestId("room-shift").isVisible(), "the page stopped working after refusing a model");
  await shot(page, "bad-input-too-large");
  await page.close();
  return { error, tooLarge, lying_gguf: lying, three_gib_pick: tooBig, trap_notice: crashed, worker_crash_notice: workerCrashed, worker_trap_notice: workerOom };
}

// The site `rosetta lab` assembled, served by a plain static host that sends no headers at all
// (no COOP/COEP, no CSP header): the lab works on one thread and says why.
async function unisolatedHost(browser) {
  const root = join(artifacts, "site");
  const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json", ".css": "text/css", ".svg": "image/svg+xml" };
  const host = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    const file = join(root, path.endsWith("/") ? `${path}index.html` : path);
    if (!file.startsWith(root)) return res.writeHead(403).end();
    try {
      const body = await readFile(file);
      res.writeHead(200, { "Content-Type": types[file.slice(file.lastIndexOf("."))] || "application/octet-stream" }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => host.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${host.address().port}/`;
  try {
    const page = await openPage(browser, url, "unisolated");
    await page.goto(url);
    const backend = await waitForText(page, "backend", /one thread/);
    check(/not cross-origin isolated/.test(backend), `unisolated: the page does not say why it runs one thread: ${backend}`);
    await waitForModel(page);
    await page.getByTestId("tab-tokenizer").click();
    await page.getByTestId("tokenizer-text").fill("works without isolation");
    await waitForText(page, "tokens-base-count", /^\d+$/);
    await page.close();
    return backend;
  } finally {
    host.close();
  }
}

// The model visitors get (LAB_REAL_MODEL: SmolLM2-135M-Instruct Q4_1), served on its own with
// a few short rows, on the CPU path, every room used as a person would. The worker computes; the
// page must stay free throughout — tabs answer while the geometry is measured, no task over
// 200 ms — and a slider moved twice shows the second result only.
async function realModel(browser) {
  const gguf = process.env.LAB_REAL_MODEL;
  const label = "smollm2-cpu";
  const { server, url } = await startServer(["--model", gguf], "site-real");
  const result = {};
  try {
    const page = await openPage(browser, url, label);
    const opened = Date.now();
    await page.goto(`${url}?threads=2`);
    result.first_render_ms = await firstRender(page);
    result.backend = await waitForText(page, "backend", /CPU/);
    check(/2 threads: wasm threads/.test(result.backend), `${label}: not on the threaded module: ${result.backend}`);
    result.load_seconds = await waitForModel(page);
    result.ready_ms = Date.now() - opened;
    result.status = await text(page, "model-status");
    check(/projections kept quantized/.test(result.status), `${label}: the model is not kept quantized: ${result.status}`);
    const since = await pageNow(page);
    // The shift room starts measuring the geometry (the longest computation); meanwhile the other
    // rooms' tabs answer at once.
    await page.getByTestId("tab-shift").click();
    await waitForText(page, "shift-status", /Measuring/);
    result.tab_switch_while_measuring_ms = [];
    for (const slug of ["tokenizer", "features", "shift"]) result.tab_switch_while_measuring_ms.push(await switchRoom(page, slug));
    check(result.tab_switch_while_measuring_ms.every((ms) => ms < 1000), `${label}: tabs took ${result.tab_switch_while_measuring_ms} ms while the worker measured`);
    const shift = await shiftRoom(page, label);
    result.shift = shift;
    result.features = await featuresRoom(page, label, true);
    await page.getByTestId("tab-distill").click();
    await page.getByTestId("distill-start").click();
    await waitForText(page, "distill-step", /step ([3-9]|\d{2,})/);
    await page.getByTestId("distill-pause").click();
    result.distill = await waitForText(page, "distill-status", /Paused at step \d+/);
    const tokens = await tokenizerRoomPlain(page, label);
    result.tokens = tokens;
    result.speed = await measureSpeedText(page);
    result.longest_task_ms = await checkResponsive(page, since, label);
    check(page.consoleErrors.length === 0, `${label}: console errors: ${page.consoleErrors.join(" | ")}`);
    await page.close();
  } finally {
    server.kill();
  }
  return result;
}

// The tokenizer room without an extended tokenizer: the base pieces and the fertility chart.
async function tokenizerRoomPlain(page, label) {
  await page.getByTestId("tab-tokenizer").click();
  await page.getByTestId("tokenizer-lang").selectOption("hu");
  await page.getByTestId("tokenizer-text").fill("A magyar nyelv szép.");
  const count = parseInt(await waitForText(page, "tokens-base-count", /^\d+$/), 10);
  check(count > 3, `${label}: ${count} tokens for a Hungarian sentence`);
  const premiums = await waitForText(page, "token-premiums", /against English: .*hu \d+\.\d+×/);
  return { count, premiums };
}

async function measureSpeedText(page) {
  await page.getByTestId("measure-speed").click();
  const shown = await waitForText(page, "forward-speed", /tokens\/s|failed/);
  check(/forward: [\d.]+ tokens\/s .*decode: [\d.]+ tokens\/s/.test(shown), `speed measurement: ${shown}`);
  return shown;
}

async function run() {
  const { server, url } = await startServer();
  console.log(`lab served at ${url}`);
  try {
    // 1. WebGPU on SwiftShader.
    const gpu = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: [...BASE_FLAGS, ...WEBGPU_FLAGS] });
    try {
      // The link chooses WebGPU: on SwiftShader the probe would choose the CPU (checked below).
      const page = await openPage(gpu, url, "webgpu");
      await page.goto(`${url}?backend=webgpu`);
      timings.webgpu_first_render_ms = await firstRender(page);
      const backend = await waitForText(page, "backend", /WebGPU|CPU/);
      check(/^WebGPU/.test(backend), `expected WebGPU on SwiftShader, got: ${backend}`);
      timings.webgpu_adapter = backend;
      timings.webgpu_load_seconds = await waitForModel(page);
      const since = await pageNow(page);
      timings.webgpu_tokens = await tokenizerRoom(page, "webgpu");
      timings.webgpu_shift = await shiftRoom(page, "webgpu");
      timings.webgpu_pruned_bpc = await featuresRoom(page, "webgpu");
      timings.webgpu_distill = await distillRoom(page, "webgpu");
      timings.webgpu_forward_tokens_per_s = await measureSpeed(page);
      timings.webgpu_longest_task_ms = await checkResponsive(page, since, "webgpu");
      await courseMode(page, url, "webgpu");
      check(page.consoleErrors.length === 0, `webgpu: console errors: ${page.consoleErrors.join(" | ")}`);
      await page.close();
      timings.bad_input = await badInput(gpu, url);
      // Without a choice in the link, SwiftShader's software adapter sends the worker to the
      // threaded CPU build, and the page says why.
      const auto = await openPage(gpu, url, "auto");
      await auto.goto(url);
      timings.backend_auto = await waitForText(auto, "backend", /WebGPU|CPU/);
      check(/^CPU \(wasm\) — the lab's threaded CPU build; \d+ threads: .*WebGPU's only adapter is a software one \(swiftshader\)/.test(timings.backend_auto), `auto on SwiftShader: ${timings.backend_auto}`);
      await waitForModel(auto);
      await auto.close();
      // On one thread (the WebGPU build) the worker measures both devices and says which won, by how much.
      const probed = await openPage(gpu, url, "probe");
      await probed.goto(`${url}?threads=1`);
      timings.backend_probe = await waitForText(probed, "backend", /measured/);
      check(/a 16×576×1536 matmul took [\d.]+ ms here, [\d.]+ ms on (the CPU|WebGPU)/.test(timings.backend_probe), `the probe's sentence: ${timings.backend_probe}`);
      await waitForModel(probed);
      await probed.close();
    } finally {
      await gpu.close();
    }
    // 2. No WebGPU at all: the CPU fallback, said on the page.
    const cpu = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: BASE_FLAGS });
    try {
      // rosetta lab serves the page cross-origin isolated: the threaded module, on two threads
      // (named in the link, so that the check holds whatever the machine's core count).
      const page = await openPage(cpu, url, "cpu");
      await page.goto(`${url}?threads=2`);
      timings.cpu_first_render_ms = await firstRender(page);
      const backend = await waitForText(page, "backend", /WebGPU|CPU/);
      check(/^CPU \(wasm\)/.test(backend), `expected the CPU fallback without WebGPU, got: ${backend}`);
      timings.cpu_reason = backend;
      check(/2 threads: wasm threads on a cross-origin isolated page; no WebGPU: this browser offers the worker no WebGPU adapter/.test(backend), `cpu: the isolated page does not run the threaded module: ${backend}`);
      timings.cpu_load_seconds = await waitForModel(page);
      const since = await pageNow(page);
      timings.cpu_tokens = await tokenizerRoom(page, "cpu");
      timings.cpu_shift = await shiftRoom(page, "cpu");
      timings.cpu_pruned_bpc = await featuresRoom(page, "cpu");
      timings.cpu_forward_tokens_per_s = await measureSpeed(page);
      timings.cpu_longest_task_ms = await checkResponsive(page, since, "cpu");
      check(page.consoleErrors.length === 0, `cpu: console errors: ${page.consoleErrors.join(" | ")}`);
      // The same model on both backends must tell the same story (f32 sums in another order).
      const numbers = (s) => (s.match(/[\d]+\.[\d]+/g) || []).map(Number);
      const pairs = [[timings.webgpu_shift.bpc, timings.cpu_shift.bpc], [timings.webgpu_pruned_bpc.cells.join(" "), timings.cpu_pruned_bpc.cells.join(" ")]];
      for (const [gpuText, cpuText] of pairs) {
        const [g, c] = [numbers(gpuText), numbers(cpuText)];
        check(g.length > 0 && g.length === c.length && g.every((v, i) => Math.abs(v - c[i]) <= 0.01), `WebGPU and CPU disagree: ${gpuText} vs ${cpuText}`);
      }
      // A pool thread's panic reaches the page on that thread's own port (the worker is blocked in
      // the pool while its threads compute): the crash notice quotes it, and a reload brings the
      // lab back. The worker's test hook spawns the panicking job; nothing else can reach a thread.
      const [labWorker] = page.workers();
      check(labWorker, "cpu: the page runs no worker");
      await labWorker.evaluate(() => self.labSimulateThreadPanic());
      timings.cpu_thread_crash_notice = await waitForText(page, "lab-crashed", /The lab stopped: [\s\S]*a simulated panic in a thread of the pool[\s\S]*Reload the lab/);
      await shot(page, "cpu-thread-crashed");
      await page.getByText("Reload the lab").click();
      await waitForModel(page);
      check(await page.getByTestId("lab-crashed").count() === 0, "cpu: the page reloaded after a thread's crash still shows the notice");
      await page.close();
      timings.cpu_quantized = await quantizedModel(cpu, url, timings.cpu_shift.bpc);
      timings.unisolated_host = await unisolatedHost(cpu);
      if (process.env.LAB_REAL_MODEL) timings.smollm2_cpu = await realModel(cpu);
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
