# Lints ride on the builds CI makes anyway. Sourced, not executed, by scripts/test.sh and the
# scripts it calls: every workspace crate is compiled by clippy-driver (as `cargo clippy` does)
# with `-D warnings`, so a lint or a rustc warning fails the build at the crate that has it —
# no separate `cargo clippy` compile of burn, natively or for wasm32. Dependencies are compiled
# by plain rustc (the wrapper applies to workspace members only), so the lint pass costs no
# rebuild of them. The lint levels are `[workspace.lints]` in Cargo.toml and clippy.toml.
#
# A developer gets the same verdict from `cargo clippy --workspace --all-targets -- -D warnings`.
RUSTC_WORKSPACE_WRAPPER="$(rustc --print sysroot)/bin/clippy-driver"
if [[ ! -x "$RUSTC_WORKSPACE_WRAPPER" ]]; then
  rustup component add clippy >&2
fi
CLIPPY_ARGS="-Dwarnings"
export RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS

# For wasm32 builds: the same lints plus clippy-wasm/clippy.toml's `disallowed-methods` — the
# synchronous tensor readbacks, which panic on WebGPU. Code compiled for wasm32 is exactly the
# code the browser can reach, so the rule "tensors are read back through `readback`" is checked
# where it holds. Use as `CLIPPY_CONF_DIR="$ROSETTA_WASM_CLIPPY_CONF" cargo … --target wasm32-…`.
ROSETTA_WASM_CLIPPY_CONF="$ROSETTA_ROOT/.config/clippy-wasm"
export ROSETTA_WASM_CLIPPY_CONF
