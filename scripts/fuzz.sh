#!/usr/bin/env bash
# Coverage-guided fuzzing of every loader and parser (fuzz/src/lib.rs) with libFuzzer through
# cargo-fuzz, installed pinned into the tool cache outside the clone. The stable toolchain takes
# cargo-fuzz's sanitizer flags with RUSTC_BOOTSTRAP=1 (no nightly can be fetched here).
#
# Usage: scripts/fuzz.sh [TARGET...]   (default: all)
#   FUZZ_RUNS=1000000   executions per target     FUZZ_SECONDS=600  time limit per target
# Limits per input: 1 s, 1 GB RSS and 1 GB per allocation — any excess is a crash. Crashes land
# in fuzz/artifacts/<target>/; copy each into fuzz/regressions/<target>/ with its fix (the
# replay test, tests/fuzz/replay.rs, runs them in CI). Prints each target's final stats.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROSETTA_CACHE/target}"
tools="$ROSETTA_CACHE/tools/cargo-fuzz"
if [[ ! -x "$tools/bin/cargo-fuzz" ]]; then
  cargo install cargo-fuzz@0.13.1 --locked --root "$tools" >&2
fi
export PATH="$tools/bin:$PATH"
runs="${FUZZ_RUNS:-1000000}"
seconds="${FUZZ_SECONDS:-600}"
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=(gguf_header gguf_tokenizer gguf safetensors config_json tokenizer_json chat_template jsonl train_toml state_json)
fi
corpus="$ROSETTA_CACHE/fuzz/corpus"
# Seeds from the ordinary dev build (RUSTC_BOOTSTRAP changes every fingerprint: set it only for
# cargo-fuzz, whose sanitizer build is separate anyway).
cargo run -q -p rosetta-tests --example fuzz_seeds -- "$corpus" >&2
for target in "${targets[@]}"; do
  echo "==> $target" >&2
  start=$SECONDS
  # Its own target dir: the sanitizer build shares nothing with the dev build, and must not
  # lock or invalidate it.
  CARGO_TARGET_DIR="$ROSETTA_CACHE/fuzz-target" RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz --features libfuzzer "$target" "$corpus/$target" -- \
    -runs="$runs" -max_total_time="$seconds" -timeout=1 -rss_limit_mb=1024 -malloc_limit_mb=1024 \
    -print_final_stats=1 2>&1 | grep -E "^(stat::|==|SUMMARY|Done|INFO: (Loaded|-max_len))|panicked|ERROR" || true
  echo "$target: $((SECONDS - start)) s" >&2
done
