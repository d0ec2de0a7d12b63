#!/usr/bin/env bash
# Prepares the GPU run (issue 19) here, on a machine without a GPU, for a lent GPU machine that has
# no network, PyTorch and transformers installed, and takes at most 64 MiB per call.
#
#   scripts/gpu/prepare.sh            # builds, then prints the two device calls to make
#
# Writes two carries under out/gpu/ (ignored by git), each under 64 MiB:
#   out/gpu/carry1: the release `rosetta` with the wgpu backend (Vulkan), stripped, xz-compressed,
#                   and the first half of the default model (SmolLM2-135M-Instruct Q4_1, 98 MB)
#   out/gpu/carry2: the second half, the `gguf` Python package transformers needs to read a GGUF
#                   (pure Python; copied from the reference venv), and the checksums
# CUDA: a CUDA build needs cubecl's LLVM download, which no machine here reaches
# (reports/ci/README.md), so the Rosetta side runs on wgpu (Vulkan on the GPU) and PyTorch on CUDA.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROSETTA_CACHE/target}"
jobs="${CARGO_BUILD_JOBS:-$(nproc)}"
limit=$((64 * 1024 * 1024))

cargo build --release --locked -j "$jobs" -p rosetta-cli --features wgpu
model="$(scripts/fetch-model.sh)"
scripts/setup-python.sh >/dev/null
gguf_package="$("$ROSETTA_VENV/bin/python" -c 'import gguf, os; print(os.path.dirname(gguf.__file__))')"

rm -rf out/gpu/carry1 out/gpu/carry2
mkdir -p out/gpu/carry1 out/gpu/carry2
strip -o out/gpu/rosetta "$CARGO_TARGET_DIR/release/rosetta"
xz -T "$jobs" -6 -c out/gpu/rosetta > out/gpu/carry1/rosetta.xz
half=$(( ($(stat -c %s "$model") + 1) / 2 ))
head -c "$half" "$model" > out/gpu/carry1/model.part1
tail -c +"$((half + 1))" "$model" > out/gpu/carry2/model.part2
cp -r "$gguf_package" out/gpu/carry2/gguf
(cd "$(dirname "$model")" && sha256sum "$(basename "$model")") > out/gpu/carry2/model.sha256
sha256sum out/gpu/rosetta | sed 's| out/gpu/| |' > out/gpu/carry2/rosetta.sha256
rm out/gpu/rosetta

for carry in out/gpu/carry1 out/gpu/carry2; do
  size=$(du -sb "$carry" | cut -f1)
  if (( size > limit )); then
    echo "prepare: $carry holds $((size / 1048576)) MiB, more than one call carries (64 MiB)" >&2
    exit 1
  fi
  printf 'prepare: %s %d MiB\n' "$carry" $((size / 1048576)) >&2
done
cat >&2 <<'CALLS'
prepare: on a lent GPU machine, two calls of the device tool (the same warm machine):
  1. carry ["out/gpu/carry1"], command: bash scripts/gpu/run.sh unpack
  2. carry ["out/gpu/carry2"], command: bash scripts/gpu/run.sh measure   (timeout_s 560)
then commit what comes back under reports/gpu/ (the command's $OUT: results/*.json, summary.md).
CALLS
