#!/usr/bin/env bash
# The browser half of the tests: wasm32 builds run in headless Debian Chromium on WebGPU
# (SwiftShader when there is no GPU), driven by wasm-bindgen-test-runner + chromedriver.
# Called by scripts/test.sh; runnable alone after scripts/setup-web.sh.
#
# Both browser test crates build in one cargo invocation with the web lab's packages and
# features, in the profile the lab's tests use (`web-test`, $ROSETTA_WASM_PROFILE): burn is
# compiled for wasm32 once for all of them. `--build-only` builds without running.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
source scripts/lint-env.sh
tools_bin="$(scripts/setup-web.sh)"
export PATH="$tools_bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROSETTA_CACHE/target}"
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
export CHROMEDRIVER=/usr/bin/chromedriver
export WASM_BINDGEN_TEST_WEBDRIVER_JSON="$ROSETTA_ROOT/tests/browser/webdriver.json"
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-600}"
export CLIPPY_CONF_DIR="$ROSETTA_WASM_CLIPPY_CONF"
jobs="${CARGO_BUILD_JOBS:-$(nproc)}"
profile="${ROSETTA_WASM_PROFILE:-web-test}"

# The same package set and features as scripts/build-lab.sh, so the two share every artifact.
wasm_build=(--target wasm32-unknown-unknown --profile "$profile" --locked -j "$jobs"
  -p rosetta-lab -p rosetta-lab-page -p rosetta-model -p rosetta-kernels --features rosetta-lab/webgpu,rosetta-model/wgpu,rosetta-kernels/wgpu)

if [[ "${1:-}" == "--build-only" ]]; then
  cargo test "${wasm_build[@]}" --test browser --no-run
  exit 0
fi

echo "==> WGSL kernels vs references, and the model's WebGPU logits vs its CPU (wasm) logits, in headless Chromium"
cargo test "${wasm_build[@]}" --test browser
