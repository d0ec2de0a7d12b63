// llama.cpp, the peer of `rosetta bench generate`: prefill and greedy decode of one GGUF on the
// CPU through npm node-llama-cpp (its prebuilt linux-x64 binary, never built here), with the
// thread count the Rosetta side uses. Installed by scripts/setup-peers.sh.
//
// Usage: node llama_bench.mjs MODEL.gguf --threads N --prompt-tokens P --new-tokens T [--repeats R]
// Prints one JSON object: prefill and decode tokens/s (best of R), and the greedy tokens.
import { getLlama } from "node-llama-cpp";

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
}

const modelPath = process.argv[2];
const threads = Number(arg("--threads", "2"));
const promptTokens = Number(arg("--prompt-tokens", "128"));
const newTokens = Number(arg("--new-tokens", "64"));
const repeats = Number(arg("--repeats", "3"));
const promptText = arg("--prompt", "The history of the Hungarian language begins");

const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
const context = await model.createContext({ contextSize: 2048, batchSize: 512, threads, sequences: 1 });

// A prompt of exactly `promptTokens` ids: the text's tokens repeated (what is measured is speed).
const base = model.tokenize(promptText);
const prompt = Array.from({ length: promptTokens }, (_, i) => base[i % base.length]);

let bestPrefill = 0;
let bestDecode = 0;
let generated = [];
for (let r = 0; r < repeats; r++) {
  const sequence = context.getSequence();
  let t0 = performance.now();
  await sequence.evaluateWithoutGeneratingNewTokens(prompt);
  const prefill = promptTokens / ((performance.now() - t0) / 1000);
  await sequence.clearHistory();

  // Decode: the whole prompt, then `newTokens` greedy ones (the context Rosetta decodes in); the
  // clock starts at the first generated token (the prompt's own evaluation is prefill).
  const tokens = [];
  let start = 0;
  for await (const token of sequence.evaluate(prompt, { temperature: 0 })) {
    if (tokens.length === 0) start = performance.now();
    tokens.push(token);
    if (tokens.length > newTokens) break;
  }
  const decode = newTokens / ((performance.now() - start) / 1000);
  sequence.dispose();
  bestPrefill = Math.max(bestPrefill, prefill);
  bestDecode = Math.max(bestDecode, decode);
  generated = tokens.slice(0, newTokens);
}
console.log(JSON.stringify({
  peer: "llama.cpp (node-llama-cpp 3.22.1, prebuilt linux-x64 CPU binary)",
  threads, prompt_tokens: promptTokens, new_tokens: newTokens,
  prefill_tokens_per_second: bestPrefill, decode_tokens_per_second: bestDecode,
  generated,
}));
await context.dispose();
await model.dispose();
