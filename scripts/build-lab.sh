#!/usr/bin/env bash
# Builds the web lab's three wasm modules for wasm32 (cargo profile `lab`): the page
# (rosetta-lab-page: leptos, no model code — what the first view downloads) and the worker that
# runs the model (rosetta-lab) twice: `rosetta_lab` (WebGPU, and the CPU on one thread) and
# `rosetta_lab_threads` (the CPU on rayon's pool over wasm threads, for cross-origin isolated
# pages: built with atomics, which needs the standard library rebuilt — rust-src and
# `-Zbuild-std` through RUSTC_BOOTSTRAP on the stable toolchain — and has no WebGPU, whose browser
# types are not Send with atomics). `static/worker.js` picks one. JS bindings by wasm-bindgen (`--target web`), then binaryen's
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

threads_target="$CARGO_TARGET_DIR/wasm-threads"
build_threaded() {
  # The threaded worker: its own target dir, since every crate (std included) is built with
  # atomics. The link arguments go to the module's own link only (`cargo rustc`): shared memory
  # of at most 4 GiB (wasm32's whole address space), imported so that each thread instantiates
  # the module on it, and the thread-local storage exports wasm-bindgen's thread start-up calls.
  # rust-src comes from scripts/setup-web.sh; RUSTC_BOOTSTRAP only unlocks `-Zbuild-std` on the
  # pinned stable compiler.
  RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$threads_target" \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+atomics,+bulk-memory,+mutable-globals" \
    cargo rustc --target wasm32-unknown-unknown --profile "$profile" --locked -j "$jobs" \
    -Zbuild-std=std,panic_abort -p rosetta-lab --lib --features rosetta-lab/threads -- \
    -C link-arg=--shared-memory -C link-arg=--import-memory -C link-arg=--max-memory=4294967296 \
    -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size \
    -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base
}
# ROSETTA_LAB_THREADED_ONLY=1: build the threaded module's wasm and stop (scripts/test.sh starts
# it early, in the background, beside the native build).
if [[ "${ROSETTA_LAB_THREADED_ONLY:-0}" == 1 ]]; then
  build_threaded
  exit 0
fi

# The same package set and features as scripts/test-browser.sh: one wasm32 build serves both.
cargo build --target wasm32-unknown-unknown --profile "$profile" --locked -j "$jobs" \
  -p rosetta-lab -p rosetta-lab-page -p rosetta-model -p rosetta-kernels --features rosetta-lab/webgpu,rosetta-model/wgpu,rosetta-kernels/wgpu
build_threaded
staging="$(mktemp -d "${TMPDIR:-/tmp}/rosetta-lab-pkg.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
opt_label="after wasm-opt -O2"
[[ "${ROSETTA_LAB_WASM_OPT:-1}" != 0 ]] || opt_label="served (wasm-opt skipped)"
sizes=""
for module in rosetta_lab_page rosetta_lab rosetta_lab_threads; do
  raw="$CARGO_TARGET_DIR/wasm32-unknown-unknown/$profile/$module.wasm"
  [[ "$module" != rosetta_lab_threads ]] || raw="$threads_target/wasm32-unknown-unknown/$profile/rosetta_lab.wasm"
  wasm-bindgen --target web --no-typescript --out-name "$module" --out-dir "$staging" "$raw"
  bound="$(stat -c %s "$staging/${module}_bg.wasm")"
  if [[ "${ROSETTA_LAB_WASM_OPT:-1}" != 0 ]]; then
    web/node_modules/.bin/wasm-opt -O2 \
      --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-reference-types \
      --enable-multivalue --enable-mutable-globals --enable-threads \
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
