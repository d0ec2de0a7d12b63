#!/usr/bin/env bash
# Prepares the GPU run (issue 19) here, on a machine without a GPU, for a lent GPU machine that has
# no network, PyTorch and transformers installed, and takes at most 64 MiB per call — the working
# tree (about 13 MB) included.
#
#   scripts/gpu/prepare.sh            # builds, then prints the device calls to make
#
# Writes the carries out/gpu/carry1 … carryN (ignored by git), each small enough to travel beside
# the working tree in one call:
#   carry1: the release `rosetta` with the wgpu backend (Vulkan), and the same with burn's kernel
#           autotuning (`rosetta-autotune`), stripped and xz-compressed, the
#           Vulkan/GL loader packages (.deb; the GPU image has the NVIDIA driver but no loader),
#           and the first bytes of the default model (SmolLM2-135M-Instruct Q4_1, 98 MB)
#   carry2…: the rest of the model, the `gguf` Python package transformers needs to read a GGUF
#           (pure Python; copied from the reference venv), and the checksums (manifest.txt)
# CUDA: a CUDA build needs cubecl's LLVM download, which no machine here reaches
# (reports/ci/README.md), so the Rosetta side runs on wgpu (Vulkan on the GPU) and PyTorch on CUDA.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROSETTA_CACHE/target}"
jobs="${CARGO_BUILD_JOBS:-$(nproc)}"
mib=$((1024 * 1024))

# Without the default `remote` feature (`rosetta serve-device`): the GPU run serves no other host,
# and its network stack would grow the carried binary.
cargo build --release --locked -j "$jobs" -p rosetta-cli --no-default-features --features wgpu
# A second binary with burn's kernel autotuning, in its own target directory (other features,
# so sharing one would rebuild burn at every switch).
autotune_target="$CARGO_TARGET_DIR-autotune"
CARGO_TARGET_DIR="$autotune_target" cargo build --release --locked -j "$jobs" -p rosetta-cli --no-default-features --features gpu
model="$(scripts/fetch-model.sh)"
scripts/setup-python.sh >/dev/null
gguf_package="$("$ROSETTA_VENV/bin/python" -c 'import gguf, os; print(os.path.dirname(gguf.__file__))')"
# transformers asks the package's metadata for its version: the dist-info travels too.
gguf_metadata="$("$ROSETTA_VENV/bin/python" -c 'import importlib.metadata as m; print(m.distribution("gguf")._path)')"

# The loaders, pinned to Debian bookworm's versions and cached outside the clone.
debs="$ROSETTA_CACHE/gpu-debs"
loader_packages=(libvulkan1=1.3.239.0-1 libegl1=1.6.0-1 libglvnd0=1.6.0-1 libopengl0=1.6.0-1
  libgl1=1.6.0-1 libglx0=1.6.0-1 libgles2=1.6.0-1)
if (( $(find "$debs" -name '*.deb' 2>/dev/null | wc -l) < ${#loader_packages[@]} )); then
  mkdir -p "$debs" /tmp/rosetta-apt-amd64/partial
  apt_options=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/rosetta-apt-amd64)
  apt-get "${apt_options[@]}" update >/dev/null
  (cd "$debs" && apt-get "${apt_options[@]}" download "${loader_packages[@]}")
fi

# What travels with every call besides a carry: the tracked and untracked-not-ignored files.
tree=$( { git ls-files -z; git ls-files -z --others --exclude-standard; } | du -cb --files0-from=- | tail -1 | cut -f1)
# One call carries at most 64 MiB in all; 2 MiB stay spare for the tree's growth.
capacity=$((64 * mib - tree - 2 * mib))

rm -rf out/gpu/carry*
mkdir -p out/gpu/carry1
strip -o out/gpu/rosetta "$CARGO_TARGET_DIR/release/rosetta"
strip -o out/gpu/rosetta-autotune "$autotune_target/release/rosetta"
xz -T "$jobs" -6 -c out/gpu/rosetta > out/gpu/carry1/rosetta.xz
xz -T "$jobs" -6 -c out/gpu/rosetta-autotune > out/gpu/carry1/rosetta-autotune.xz
cp -r "$debs" out/gpu/carry1/debs
{
  (cd "$(dirname "$model")" && sha256sum "$(basename "$model")")
  (cd out/gpu && sha256sum rosetta rosetta-autotune)
} > out/gpu/manifest.sha256
rm out/gpu/rosetta out/gpu/rosetta-autotune

# The model's bytes fill each carry's room, in order; the gguf package and the checksums ride in
# the last one.
model_size=$(stat -c %s "$model")
extras=$(( $(du -sb "$gguf_package" "$gguf_metadata" | cut -f1 | paste -sd+ | bc) + 4096 ))
offset=0 carry=1
while (( offset < model_size )); do
  mkdir -p "out/gpu/carry$carry"
  room=$((capacity - $(du -sb "out/gpu/carry$carry" | cut -f1)))
  left=$((model_size - offset))
  if (( left + extras <= room )); then take=$left; else take=$((room < left ? room : left)); fi
  if (( take <= 0 )); then echo "prepare: no room left in carry$carry (the tree holds $((tree / mib)) MiB)" >&2; exit 1; fi
  dd if="$model" of="out/gpu/carry$carry/model.part$carry" bs=1M iflag=skip_bytes,count_bytes \
    skip="$offset" count="$take" status=none
  offset=$((offset + take))
  (( offset < model_size )) && carry=$((carry + 1))
done
if (( $(du -sb "out/gpu/carry$carry" | cut -f1) + extras > capacity )); then carry=$((carry + 1)); mkdir -p "out/gpu/carry$carry"; fi
cp -r "$gguf_package" "out/gpu/carry$carry/gguf"
cp -r "$gguf_metadata" "out/gpu/carry$carry/"
cp out/gpu/manifest.sha256 "out/gpu/carry$carry/"
echo "$carry" > "out/gpu/carry$carry/carries"

for dir in out/gpu/carry*; do
  size=$(du -sb "$dir" | cut -f1)
  if (( size + tree > 64 * mib )); then
    echo "prepare: $dir holds $((size / mib)) MiB, with the tree more than one call carries (64 MiB)" >&2
    exit 1
  fi
  printf 'prepare: %s %d MiB (+ the tree, %d MiB)\n' "$dir" $((size / mib)) $((tree / mib)) >&2
done
echo "prepare: on a lent GPU machine, $carry calls of the device tool, back to back (the same warm machine):" >&2
for ((k = 1; k < carry; k++)); do
  echo "  $k. carry [\"out/gpu/carry$k\"], command: bash scripts/gpu/run.sh receive" >&2
done
echo "  $carry. carry [\"out/gpu/carry$carry\"], command: bash scripts/gpu/run.sh measure   (timeout_s 580)" >&2
echo "then unpack what comes back under reports/gpu/ (gpu-run.tar.gz: results/*.json, log/; summary.md)." >&2
