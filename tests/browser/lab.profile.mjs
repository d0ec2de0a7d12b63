// Profile (not a test) of the web lab's "Measure speed" on a real model in headless Debian
// Chromium: the V8 CPU profiler over the forward and decoding passes, self time summed per
// function (wasm functions by their Rust names), top entries printed and written as JSON.
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
const server = spawn(rosetta, ["lab", "--port", "0", "--no-open", "--out", mkdtempSync(join(tmpdir(), "rosetta-lab-prof-")), ...labArgs], { stdio: ["ignore", "pipe", "inherit"] });
const url = await new Promise((resolve, reject) => {
  let seen = "";
  server.stdout.on("data", (c) => { seen += c; const m = seen.match(/Rosetta lab at (http:\/\/\S+)/); if (m) resolve(m[1]); });
  server.on("exit", (code) => reject(new Error(`rosetta lab exited with ${code}`)));
});
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(600_000);
  await page.goto(url + query);
  await page.waitForFunction(() => /loaded in/.test(document.querySelector('[data-testid="model-status"]')?.innerText ?? ""));
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Profiler.enable");
  await cdp.send("Profiler.setSamplingInterval", { interval: 200 });
  await cdp.send("Profiler.start");
  await page.getByTestId("measure-speed").click();
  await page.waitForFunction(() => /tokens\/s|failed/.test(document.querySelector('[data-testid="forward-speed"]')?.innerText ?? ""));
  const { profile } = await cdp.send("Profiler.stop");
  const speed = await page.getByTestId("forward-speed").innerText();
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
  writeFileSync(outJson, JSON.stringify({ query, speed, total_ms: total / 1000, top }, null, 2));
  console.log(speed);
  for (const t of top) console.log(`${t.self_percent.toString().padStart(5)}%  ${t.name}`);
} finally {
  await browser.close();
  server.kill();
}
