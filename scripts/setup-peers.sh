#!/usr/bin/env bash
# The llama.cpp peer of `rosetta bench generate` / `bench forward`: npm node-llama-cpp 3.22.1 and
# its prebuilt linux-x64 CPU binary, installed once into the tool cache outside the clone
# ($ROSETTA_CACHE/tools/llama). Nothing is built: the benchmark loads it with `build: "never"`.
# Prints the directory holding node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
dir="$ROSETTA_CACHE/tools/llama"
version="3.22.1"
if [ -f "$dir/node_modules/node-llama-cpp/package.json" ] && grep -q "\"version\": \"$version\"" "$dir/node_modules/node-llama-cpp/package.json"; then
  echo "$dir"
  exit 0
fi
mkdir -p "$dir"
cat > "$dir/package.json" <<JSON
{ "name": "rosetta-llama-peer", "private": true,
  "dependencies": { "node-llama-cpp": "$version", "@node-llama-cpp/linux-x64": "$version" } }
JSON
# --ignore-scripts: the postinstall would offer to build llama.cpp. The prebuilt binaries are
# optional npm packages of their own; --omit=optional skips the GPU and other-platform builds
# (~700 MB) and the CPU one we use (30 MB) is a direct dependency above.
(cd "$dir" && npm install --no-audit --no-fund --ignore-scripts --omit=optional >&2)
echo "$dir"
