#!/usr/bin/env bash
# The web lab end to end in headless Debian Chromium: builds the page (scripts/build-lab.sh), a
# tiny random model and its Hungarian-extended tokenizer (`rosetta vocab extend`), serves them
# with `rosetta lab`, and drives every room on WebGPU (SwiftShader) and on the CPU fallback, then
# on the default SmolLM2-135M on the CPU path (tests/browser/lab.e2e.mjs). Screenshots and timings land in $ROSETTA_ARTIFACTS/lab
# (default out/test-artifacts/lab). Called by scripts/test.sh; runnable alone.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROSETTA_CACHE/target}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
jobs="${CARGO_BUILD_JOBS:-$(nproc)}"
artifacts="${ROSETTA_ARTIFACTS:-$ROSETTA_ROOT/out/test-artifacts}/lab"
work="$(mktemp -d "${TMPDIR:-/tmp}/rosetta-lab-test.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# scripts/test.sh has built the page (profile web-test, shared with the browser tests) and hands
# it over in ROSETTA_LAB_PKG; alone, this builds it. wasm-opt only shrinks and speeds up the same
# code; the tests skip its ~5 minutes.
pkg="${ROSETTA_LAB_PKG:-}"
if [[ -z "$pkg" ]]; then
  pkg="$ROSETTA_CACHE/lab/pkg-test"
  ROSETTA_LAB_PROFILE=web-test ROSETTA_LAB_WASM_OPT=0 scripts/build-lab.sh "$pkg"
fi
# The CLI and the fixture writer from the workspace's own build (the same features as the test
# build, so after scripts/test.sh this compiles nothing); `cargo run -p` would resolve features
# for one package and rebuild burn.
source scripts/lint-env.sh
cargo build --workspace --bins --examples --locked -j "$jobs"
rosetta="$CARGO_TARGET_DIR/debug/rosetta"
"$CARGO_TARGET_DIR/debug/examples/lab_fixture" "$work/tiny" >/dev/null
"$rosetta" vocab extend "$work/tiny" --lang hu --new-tokens 60 --out "$work/tiny-hu" >/dev/null
# The same model in Q8_0 blocks, picked in the page: the CPU path keeps it quantized.
"$rosetta" export "$work/tiny" --gguf q8_0 --out "$work/tiny-q8_0.gguf" >/dev/null
export LAB_QUANTIZED_MODEL="$work/tiny-q8_0.gguf"
# The model visitors get (SmolLM2-135M, cached outside the clone): one run of every room on the
# CPU path, with the main-thread checks.
export LAB_REAL_MODEL="$(scripts/fetch-model.sh)"

rm -rf "$artifacts"
node tests/browser/lab.e2e.mjs "$rosetta" "$work/tiny" "$work/tiny-hu" "$artifacts" \
  --pkg "$pkg" --langs en,hu,de --rows 24 --max-chars 60
