// llama.cpp's greedy continuation of given token ids, through npm node-llama-cpp (its prebuilt
// linux-x64 CPU binary; installed by scripts/setup-peers.sh): the check that a GGUF Rosetta
// wrote runs in llama.cpp as it runs in Rosetta (tests/model/gguf_export.rs).
//
// Usage: node llama_greedy.mjs MODEL.gguf --ids 1,2,3 --new-tokens N [--text "..."]
// Prints one JSON object: the generated ids, and llama.cpp's own tokens of --text.
import { getLlama } from "node-llama-cpp";

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
}

const modelPath = process.argv[2];
const ids = arg("--ids", "").split(",").filter((s) => s.length > 0).map(Number);
const newTokens = Number(arg("--new-tokens", "16"));
const text = arg("--text", null);

const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
const context = await model.createContext({ contextSize: 512, threads: 2, sequences: 1 });
const sequence = context.getSequence();
const generated = [];
for await (const token of sequence.evaluate(ids, { temperature: 0 })) {
  generated.push(token);
  if (generated.length >= newTokens) break;
}
console.log(JSON.stringify({ generated, tokens: text === null ? null : Array.from(model.tokenize(text)) }));
await context.dispose();
await model.dispose();
