// Profile (not a test) of the web lab's model work on a real model in headless Debian Chromium:
// the V8 CPU profiler inside the Web Worker that computes (the page only lays out), self time
// summed per function (wasm functions by their Rust names), top entries printed and written as
// JSON. LAB_PROFILE_ACTION picks what is profiled: `speed` (default: "Measure speed", a forward
// pass and greedy decoding), `strength` (a shift-strength change until the 16 sentences'
// bits/char are shown; the geometry is measured first, unprofiled) or `sparsity` (a sparsity
// change until the pruned model's bits/char are shown; the features room's first measurement
// runs first, unprofiled).
//
//   node tests/browser/lab.profile.mjs ROSETTA_BIN OUT_JSON QUERY [rosetta lab args...]
//   (QUERY e.g. "?backend=cpu" or "?backend=cpu&precision=f32")
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRequire } from "node:module";

const require = createRequire(new URL("../../web/package.json", import.meta.url));
const { chromium } = require("playwright-core");
const [rosetta, outJson, query, ...labArgs] = process.argv.slice(2);
const action = process.env.LAB_PROFILE_ACTION || "speed";
const server = spawn(rosetta, ["lab", "--port", "0", "--no-open", "--out", mkdtempSync(join(tmpdir(), "rosetta-lab-prof-")), ...labArgs], { stdio: ["ignore", "pipe", "inherit"] });
const url = await new Promise((resolve, reject) => {
  let seen = "";
  server.stdout.on("data", (c) => { seen += c; const m = seen.match(/Rosetta lab at (http:\/\/\S+)/); if (m) resolve(m[1]); });
  server.on("exit", (code) => reject(new Error(`rosetta lab exited with ${code}`)));
});

// The worker is a child target of the page: attached through the page's CDP session (not
// flattened, so commands travel inside Target.sendMessageToTarget).
async function workerProfiler(cdp) {
  const attached = new Promise((resolve) => cdp.on("Target.attachedToTarget", (e) => { if (e.targetInfo.type === "worker") resolve(e.sessionId); }));
  await cdp.send("Target.setAutoAttach", { autoAttach: true, waitForDebuggerOnStart: false, flatten: false });
  const sessionId = await attached;
  let next = 1;
  const pending = new Map();
  cdp.on("Target.receivedMessageFromTarget", (e) => {
    if (e.sessionId !== sessionId) return;
    const message = JSON.parse(e.message);
    const done = pending.get(message.id);
    if (done) { pending.delete(message.id); message.error ? done.reject(new Error(message.error.message)) : done.resolve(message.result); }
  });
  return (method, params = {}) => new Promise((resolve, reject) => {
    const id = next++;
    pending.set(id, { resolve, reject });
    cdp.send("Target.sendMessageToTarget", { sessionId, message: JSON.stringify({ id, method, params }) }).catch(reject);
  });
}

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(600_000);
  await page.goto(url + query);
  await page.waitForFunction(() => /loaded in/.test(document.querySelector('[data-testid="model-status"]')?.innerText ?? ""));
  const text = (id) => page.getByTestId(id).innerText();
  const until = (id, re) => page.waitForFunction(([id, src]) => new RegExp(src).test(document.querySelector(`[data-testid="${id}"]`)?.innerText ?? ""), [id, re.source]);
  if (action === "strength") {
    await page.getByTestId("tab-shift").click();
    await until("shift-bpc", /with the shift/);
  } else if (action === "sparsity") {
    await page.getByTestId("tab-features").click();
    await until("features-status", /layers × \d+ dimensions/);
  }
  const worker = await workerProfiler(await page.context().newCDPSession(page));
  await worker("Profiler.enable");
  await worker("Profiler.setSamplingInterval", { interval: 200 });
  await worker("Profiler.start");
  let result;
  if (action === "strength") {
    await page.getByTestId("shift-strength").evaluate((el) => { el.value = "1"; el.dispatchEvent(new Event("change", { bubbles: true })); });
    await until("shift-bpc", /with the shift ×1\.00/);
    result = await text("shift-bpc");
  } else if (action === "sparsity") {
    await page.getByTestId("sparsity").evaluate((el) => { el.value = "0.5"; el.dispatchEvent(new Event("change", { bubbles: true })); });
    await until("features-status", /Pruned to 50%/);
    result = await text("features-status");
  } else {
    await page.getByTestId("measure-speed").click();
    await until("forward-speed", /tokens\/s|failed/);
    result = await text("forward-speed");
  }
  const { profile } = await worker("Profiler.stop");
  // Self time per function: samples × the interval between them.
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  profile.samples.forEach((id, i) => {
    const name = byId.get(id).callFrame.functionName || "(anonymous)";
    self.set(name, (self.get(name) || 0) + (profile.timeDeltas[i] || 0));
  });
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const top = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 25)
    .map(([name, us]) => ({ self_percent: +(100 * us / total).toFixed(1), name }));
  writeFileSync(outJson, JSON.stringify({ query, action, result, total_ms: total / 1000, top }, null, 2));
  console.log(result);
  for (const t of top) console.log(`${t.self_percent.toString().padStart(5)}%  ${t.name}`);
} finally {
  await browser.close();
  server.kill();
}
