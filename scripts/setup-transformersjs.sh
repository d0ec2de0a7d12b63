#!/usr/bin/env bash
# transformers.js, the browser peer of the lab's "Measure speed" (tests/browser/lab.bench.mjs,
# modes tjs-*): npm @huggingface/transformers 4.3.1 (with its onnxruntime-web), and MODEL.gguf
# (default: the default model) exported to ONNX by scripts/peers/transformersjs_export.py with
# onnxruntime-genai's model builder, pinned in scripts/peers/transformersjs-requirements.txt and
# installed into a venv of its own that sees the reference venv's torch and transformers. All of it
# in the tool cache outside the clone ($ROSETTA_CACHE/tools/transformersjs), once; not used by CI.
# Prints that directory (node_modules/ and models/NAME/ with NAME the GGUF's file stem).
#
#   scripts/setup-transformersjs.sh [MODEL.gguf]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
dir="$ROSETTA_CACHE/tools/transformersjs"
version="4.3.1"
gguf="${1:-$(scripts/fetch-model.sh)}"
name="$(basename "$gguf" .gguf)"
mkdir -p "$dir"
if ! grep -qs "\"version\": \"$version\"" "$dir/node_modules/@huggingface/transformers/package.json"; then
  cat > "$dir/package.json" <<JSON
{ "name": "rosetta-transformersjs-peer", "private": true, "dependencies": { "@huggingface/transformers": "$version" } }
JSON
  # --ignore-scripts: nothing is built; the page loads the library's browser bundle and
  # onnxruntime-web's own .wasm files from node_modules.
  (cd "$dir" && npm install --no-audit --no-fund --ignore-scripts --omit=optional >&2)
fi
req="$ROSETTA_ROOT/scripts/peers/transformersjs-requirements.txt"
venv="$ROSETTA_CACHE/venv-onnx"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  reference_python="$(scripts/setup-python.sh)"
  python3 -m venv "$venv"
  # The reference venv's packages (torch, transformers, gguf) without a second 5.6 GB install.
  "$reference_python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
    > "$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/rosetta-reference.pth"
  "$venv/bin/python" -m pip install -q -r "$req" >&2
  echo "$want" > "$stamp"
fi
model="$dir/models/$name"
if [[ ! -f "$model/onnx/model_q4.onnx" || ! -f "$model/onnx/model_quantized.onnx" || ! -f "$model/onnx/model.onnx" ]]; then
  echo "setup-transformersjs: exporting $gguf to ONNX (about a minute)" >&2
  rm -rf "$model.part"
  "$venv/bin/python" scripts/peers/transformersjs_export.py "$gguf" "$model.part" > "$dir/export.log" 2>&1 \
    || { echo "setup-transformersjs: the export failed; its log: $dir/export.log" >&2; exit 1; }
  rm -rf "$model" && mv "$model.part" "$model"
fi
echo "$dir"
