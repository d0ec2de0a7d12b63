#!/usr/bin/env bash
# The browser half of the tests: wasm32 builds run in headless Debian Chromium on WebGPU
# (SwiftShader when there is no GPU), driven by wasm-bindgen-test-runner + chromedriver.
# Called by scripts/test.sh; runnable alone after scripts/setup-web.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
tools_bin="$(scripts/setup-web.sh)"
export PATH="$tools_bin:$PATH"
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
export CHROMEDRIVER=/usr/bin/chromedriver
export WASM_BINDGEN_TEST_WEBDRIVER_JSON="$ROSETTA_ROOT/tests/browser/webdriver.json"
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-600}"
jobs="${CARGO_BUILD_JOBS:-$(nproc)}"

echo "==> WGSL kernels vs references on the browser's WebGPU (headless Chromium)"
cargo test -p rosetta-kernels --features wgpu --target wasm32-unknown-unknown --test browser --locked -j "$jobs"

echo "==> the model on the browser's WebGPU vs its CPU (wasm) backend: same logits"
cargo test -p rosetta-model --no-default-features --features flex,wgpu --target wasm32-unknown-unknown --test browser --locked -j "$jobs"
