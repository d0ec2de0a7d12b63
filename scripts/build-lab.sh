#!/usr/bin/env bash
# Builds the web lab's two wasm modules for wasm32 (cargo profile `lab`): the page
# (rosetta-lab-page: leptos, no model code — what the first view downloads) and the worker that
# runs the model (rosetta-lab). JS bindings by wasm-bindgen (`--target web`), then binaryen's
# wasm-opt -O2 (npm binaryen@132; Debian's v108 breaks rustc 1.95 modules). No trunk: cargo +
# wasm-bindgen + a static index.html do the same.
#
# Usage: scripts/build-lab.sh [PKG_DIR]   (default $ROSETTA_CACHE/lab/pkg; `rosetta lab` reads it)
# Prints the sizes of each module before and after wasm-opt. ROSETTA_LAB_WASM_OPT=0 skips wasm-opt
# (≈5 min on 2 cores for a 40 MB module; the tests run the same code without it).
# ROSETTA_LAB_PROFILE picks the cargo profile: `lab` (release speed, the default: what visitors
# get) or `web-test` (what CI builds once for the browser tests and the lab's end-to-end test).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROSETTA_CACHE/target}"
tools_bin="$(scripts/setup-web.sh)"
export PATH="$tools_bin:$PATH"
out="${1:-$ROSETTA_CACHE/lab/pkg}"
jobs="${CARGO_BUILD_JOBS:-$(nproc)}"
profile="${ROSETTA_LAB_PROFILE:-lab}"
export CLIPPY_CONF_DIR="${ROSETTA_WASM_CLIPPY_CONF:-$ROSETTA_ROOT/.config/clippy-wasm}"

# The same package set and features as scripts/test-browser.sh: one wasm32 build serves both.
cargo build --target wasm32-unknown-unknown --profile "$profile" --locked -j "$jobs" \
  -p rosetta-lab -p rosetta-lab-page -p rosetta-model -p rosetta-kernels --features rosetta-model/wgpu,rosetta-kernels/wgpu
staging="$(mktemp -d "${TMPDIR:-/tmp}/rosetta-lab-pkg.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
opt_label="after wasm-opt -O2"
[[ "${ROSETTA_LAB_WASM_OPT:-1}" != 0 ]] || opt_label="served (wasm-opt skipped)"
sizes=""
for module in rosetta_lab_page rosetta_lab; do
  raw="$CARGO_TARGET_DIR/wasm32-unknown-unknown/$profile/$module.wasm"
  wasm-bindgen --target web --no-typescript --out-dir "$staging" "$raw"
  bound="$(stat -c %s "$staging/${module}_bg.wasm")"
  if [[ "${ROSETTA_LAB_WASM_OPT:-1}" != 0 ]]; then
    web/node_modules/.bin/wasm-opt -O2 \
      --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-reference-types \
      --enable-multivalue --enable-mutable-globals \
      "$staging/${module}_bg.wasm" -o "$staging/${module}_bg.opt.wasm"
    mv "$staging/${module}_bg.opt.wasm" "$staging/${module}_bg.wasm"
  fi
  optimised="$(stat -c %s "$staging/${module}_bg.wasm")"
  gzipped="$(gzip -9 -c "$staging/${module}_bg.wasm" | wc -c)"
  sizes+="$(printf '\n  %s: %.1f MB raw, %.1f MB after wasm-bindgen, %.1f MB %s (%.2f MB gzipped)' "$module" \
    "$(stat -c %s "$raw" | awk '{print $1/1e6}')" "$(echo "$bound" | awk '{print $1/1e6}')" \
    "$(echo "$optimised" | awk '{print $1/1e6}')" "$opt_label" "$(echo "$gzipped" | awk '{print $1/1e6}')")"
done

# Replace the previous build in one step: a server never sees half a build.
mkdir -p "$(dirname "$out")"
rm -rf "$out.old"
[[ -d "$out" ]] && mv "$out" "$out.old"
mv "$staging" "$out"
trap - EXIT
rm -rf "$out.old"
printf 'build-lab: %s%s\n' "$out" "$sizes" >&2
