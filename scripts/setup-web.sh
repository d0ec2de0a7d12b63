#!/usr/bin/env bash
# Installs what the browser builds and tests need, once, outside the clone:
#  - the wasm32-unknown-unknown target;
#  - wasm-bindgen-cli equal to the lockfile's wasm-bindgen (built from crates.io at opt-level 1
#    without LTO: ~4 min once on 2 cores instead of ~20 for the release profile; it only rewrites
#    a module's JS glue and serves the test pages, where that optimisation buys nothing we measure);
#  - Debian's chromium + chromium-driver (never a downloaded browser);
#  - npm packages pinned in web/package.json (playwright-core, binaryen's wasm-opt).
# Prints the directory holding wasm-bindgen / wasm-bindgen-test-runner.
set -euo pipefail
source "$(dirname "$0")/env.sh"
tools="$ROSETTA_CACHE/tools"
mkdir -p "$tools"
rustup target add wasm32-unknown-unknown >&2
# The standard library's source: the lab's threaded module rebuilds it with atomics (build-lab.sh).
rustup component add rust-src >&2

version="$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/, ""); print; exit}' "$ROSETTA_ROOT/Cargo.lock")"
if [[ -z "$version" ]]; then
  echo "setup-web: no wasm-bindgen in Cargo.lock" >&2; exit 1
fi
if [[ "$("$tools/bin/wasm-bindgen" --version 2>/dev/null | awk '{print $2}')" != "$version" ]]; then
  echo "setup-web: building wasm-bindgen-cli $version (once; ~4 min on 2 cores)" >&2
  # Not --locked: the CLI's own lockfile pins a crate version the registry no longer serves.
  # Its own target dir: the project's CARGO_TARGET_DIR and lint wrapper must not leak into it.
  env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS -u CLIPPY_CONF_DIR -u CARGO_TARGET_DIR \
    CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_DEBUG=0 \
    cargo install -q wasm-bindgen-cli --version "=$version" --root "$tools" >&2
fi

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "setup-web: installing Debian's chromium and chromium-driver" >&2
  apt-get -o DPkg::Lock::Timeout=300 update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq chromium chromium-driver >&2
fi
if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
  echo "setup-web: installing Mesa's software Vulkan (lavapipe) for native WGSL tests" >&2
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq mesa-vulkan-drivers libvulkan1 >&2
fi

if [[ -f "$ROSETTA_ROOT/web/package.json" ]]; then
  (cd "$ROSETTA_ROOT/web" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
echo "$tools/bin"
