#!/usr/bin/env bash
# Runs every test of Rosetta on a fresh machine: installs what the tests need (pinned, cached
# outside the clone), then the Rust tests (unit, parity with HF transformers, CLI end to end), the
# wasm32 builds in headless Chromium, and the web lab end to end. `.ci/run` calls exactly this.
#
# Built to fit CI's limit from a cold cache (2 cores): each of burn's two builds — native (dev
# profile) and wasm32 (profile `web-test`) — is made once and every later step reuses it; lints
# ride on those builds (scripts/lint-env.sh) instead of compiling burn a third and fourth time.
# Every step's time is printed at the end.
#
# Reference tests must run here: ROSETTA_REQUIRE_REFERENCE=1 turns a missing prerequisite into
# a failure instead of a "SKIPPED" line.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROSETTA_CACHE/target}"
export ROSETTA_REQUIRE_REFERENCE=1
# The Vulkan loader wants a runtime dir; without one it prints warnings on every adapter query.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
jobs="${CARGO_BUILD_JOBS:-$(nproc)}"

started=$SECONDS
step_name=""
step_start=$SECONDS
timings=()
step() {
  if [[ -n "$step_name" ]]; then timings+=("$(printf '%5ds  %s' $((SECONDS - step_start)) "$step_name")"); fi
  step_name="$*"
  step_start=$SECONDS
  printf '\n==> %s (%s)\n' "$*" "$(date +%H:%M:%S)"
}

step "style: cargo fmt --check"
cargo fmt --all --check

step "prerequisites: Python reference venv and the llama.cpp peer (background), default model, browser tools, lavapipe"
python_log="$ROSETTA_CACHE/setup-python.log"
scripts/setup-python.sh >"$python_log" 2>&1 &
python_pid=$!
# npm node-llama-cpp's prebuilt llama.cpp: the GGUF export test runs the exported model in it.
peers_log="$ROSETTA_CACHE/setup-peers.log"
scripts/setup-peers.sh >"$peers_log" 2>&1 &
peers_pid=$!
scripts/fetch-model.sh
# wasm32 target, wasm-bindgen-cli, Debian chromium + chromedriver, Mesa lavapipe (the software
# Vulkan adapter the native WGSL parity tests run on), the pinned npm tools.
scripts/setup-web.sh >/dev/null

source scripts/lint-env.sh

# The lab's threaded worker module is a wasm32 build of its own (std rebuilt with atomics, see
# scripts/build-lab.sh), independent of the native build and tests: it compiles in the
# background, niced, on what the native build leaves of the two cores, and the wasm32 step below
# waits for it. Little of it hides there (the native build keeps both cores busy), but no step
# waits on a core the threaded build could use (reports/ci/README.md).
threaded_log="$ROSETTA_CACHE/build-lab-threaded.log"
nice -n 19 env ROSETTA_LAB_PROFILE=web-test ROSETTA_LAB_THREADED_ONLY=1 scripts/build-lab.sh >"$threaded_log" 2>&1 &
threaded_pid=$!

step "native build: every target of the workspace, linted (clippy -D warnings)"
cargo build --workspace --all-targets --locked -j "$jobs"

step "wait for the Python reference venv and the llama.cpp peer"
if ! wait "$python_pid"; then
  cat "$python_log"
  echo "setup-python.sh failed" >&2
  exit 1
fi
if ! wait "$peers_pid"; then
  cat "$peers_log"
  echo "setup-peers.sh failed" >&2
  exit 1
fi
export ROSETTA_PYTHON="$ROSETTA_VENV/bin/python"

step "native tests (cargo-nextest: a hung test times out instead of stalling CI)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked -j "$jobs" --profile ci
  cargo test --workspace --locked --doc -j "$jobs"
else
  cargo test --workspace --locked -j "$jobs"
fi

step "GPU backends compile: the CLI with --features wgpu,cuda, type-checked and linted (no GPU here)"
# cubecl-cuda's LLVM (nvptx) comes from a build script that downloads a prebuilt LLVM, which no
# machine of this project can reach; DOCS_RS=1 makes that script stand down, as it does on
# docs.rs, so every line of Rosetta's CUDA path is still type-checked and linted. A CUDA binary
# must be built where that download works (see reports/ci/README.md).
# Without the default `remote` feature: the native build above already type-checks the
# multi-node code, and checking its network stack (iroh, tokio, axum) again costs minutes.
DOCS_RS=1 CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-12080}" cargo check -p rosetta-cli --no-default-features --features wgpu,cuda --locked -j "$jobs"

step "wasm32 build: browser tests and the lab page, one profile, linted (sync readbacks refused)"
if ! wait "$threaded_pid"; then
  cat "$threaded_log"
  echo "the lab's threaded module failed to build" >&2
  exit 1
fi
scripts/test-browser.sh --build-only
ROSETTA_LAB_PROFILE=web-test ROSETTA_LAB_WASM_OPT=0 scripts/build-lab.sh "$ROSETTA_CACHE/lab/pkg-test"

step "browser: the WGSL kernels and the model on Chromium's WebGPU (SwiftShader)"
scripts/test-browser.sh

step "browser: the web lab end to end (every room on WebGPU and on the CPU fallback)"
ROSETTA_LAB_PKG="$ROSETTA_CACHE/lab/pkg-test" scripts/test-lab.sh

step "done"
printf '\nstep times (total %d s):\n' $((SECONDS - started))
printf '%s\n' "${timings[@]}"
echo "all tests passed"
