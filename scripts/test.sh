#!/usr/bin/env bash
# Runs every test of Rosetta on a fresh machine: installs what the tests need (pinned, cached
# outside the clone), then the Rust tests (unit, parity with HF transformers, CLI end to end),
# then the wasm32 build check. `.ci/run` calls exactly this.
#
# Reference tests must run here: ROSETTA_REQUIRE_REFERENCE=1 turns a missing prerequisite into
# a failure instead of a "SKIPPED" line.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROSETTA_CACHE/target}"
export ROSETTA_REQUIRE_REFERENCE=1
jobs="${CARGO_BUILD_JOBS:-$(nproc)}"
step() { printf '\n==> %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }

step "prerequisites: Python reference venv (background), default model, browser tools and lavapipe"
python_log="$ROSETTA_CACHE/setup-python.log"
scripts/setup-python.sh >"$python_log" 2>&1 &
python_pid=$!
scripts/fetch-model.sh
# wasm32 target, wasm-bindgen-cli, Debian chromium + chromedriver, Mesa lavapipe (the software
# Vulkan adapter the native WGSL parity tests run on).
scripts/setup-web.sh >/dev/null
# The Vulkan loader wants a runtime dir; without one it prints warnings on every adapter query.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"

step "build tests (while the venv installs)"
cargo build --workspace --tests --locked -j "$jobs"

step "wait for the Python reference venv"
if ! wait "$python_pid"; then
  cat "$python_log"
  echo "setup-python.sh failed" >&2
  exit 1
fi
export ROSETTA_PYTHON="$ROSETTA_VENV/bin/python"

step "run the tests (cargo-nextest: a hung test times out instead of stalling CI)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked -j "$jobs" --profile ci
  cargo test --workspace --locked --doc -j "$jobs"
else
  cargo test --workspace --locked -j "$jobs"
fi

step "wasm32 build of the model crate (browser: flex + wgpu)"
cargo build -p rosetta-model --target wasm32-unknown-unknown --no-default-features --features flex,wgpu --locked -j "$jobs"

step "browser: the WGSL kernels and the model on Chromium's WebGPU (SwiftShader)"
scripts/test-browser.sh

step "browser: the web lab end to end (every room on WebGPU and on the CPU fallback)"
scripts/test-lab.sh

step "all tests passed"
