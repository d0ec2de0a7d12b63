#!/usr/bin/env bash
# The GPU run (issue 19), on a lent GPU machine (no network; PyTorch and transformers installed).
# Prepared here by scripts/gpu/prepare.sh; two calls on the same warm machine:
#
#   scripts/gpu/run.sh unpack    # carry out/gpu/carry1: the binary and the model's first half
#   scripts/gpu/run.sh measure   # carry out/gpu/carry2: the second half, then every measurement
#
# `measure` writes to $OUT (the device tool brings it back; commit it under reports/gpu/):
#   machine.txt                 nvidia-smi, the Vulkan adapters Rosetta sees
#   results/rosetta-*.json      `rosetta bench forward|generate|train|kernels --device wgpu` (f32),
#                               forward/generate on the Q4_1 blocks kept packed (the WGSL kernel),
#                               and a full training step in f16 with f32 master weights
#   results/torch-*.json        the same measurements in PyTorch eager on CUDA, f32 and bf16
#   summary.md                  tokens/s side by side, ratios, MFU against the card's peak
# Each step is bounded in time and a failed step is recorded, not fatal: one short call should
# bring back everything that worked. GPU_RUN_QUICK=1 runs the smallest sizes (a smoke test, also
# on a CPU-only machine with lavapipe: GPU_RUN_TORCH_DEVICE=cpu).
set -uo pipefail
cd "$(dirname "$0")/../.."
work=out/gpu/work
out="${OUT:-out/gpu/results}"
torch_device="${GPU_RUN_TORCH_DEVICE:-cuda}"
python="${ROSETTA_PYTHON:-python3}"

case "${1:-}" in
  unpack)
    mkdir -p "$work"
    xz -d -c out/gpu/carry1/rosetta.xz > "$work/rosetta" && chmod +x "$work/rosetta"
    cp out/gpu/carry1/model.part1 "$work/model.part1"
    ls -la "$work"
    "$work/rosetta" --version
    exit 0
    ;;
  measure) ;;
  *) echo "usage: scripts/gpu/run.sh unpack|measure" >&2; exit 2 ;;
esac

mkdir -p "$out/results"
model="$work/SmolLM2-135M-Instruct.Q4_1.gguf"
if [[ ! -f "$model" ]]; then
  cat "$work/model.part1" out/gpu/carry2/model.part2 > "$model"
fi
sums="$PWD/out/gpu/carry2/model.sha256"
(cd "$work" && sha256sum -c "$sums") \
  || { echo "the reassembled model does not match its checksum: run 'unpack' first, on the same machine" >&2; exit 1; }
export PYTHONPATH="$PWD/out/gpu/carry2${PYTHONPATH:+:$PYTHONPATH}"
rosetta="$work/rosetta"
quick="${GPU_RUN_QUICK:-0}"
if [[ "$quick" == 1 ]]; then
  batches=1; seq=32; new=8; train_batch=1; train_seq=32; kernel_n=64
else
  batches=1,8; seq=128; new=64; train_batch=4; train_seq=256; kernel_n=64,256,1024
fi

# The whole call's budget (the device tool stops a command at 600 s): a step that would start
# past it is recorded as skipped, so what ran still comes back.
budget="${GPU_RUN_BUDGET_S:-500}"

# Runs one step with a time limit; its output goes to $out/log/<name>.txt, its status to steps.tsv.
step() {
  local name="$1" seconds="$2"; shift 2
  mkdir -p "$out/log"
  if (( SECONDS + 10 > budget )); then
    printf '%s\tskipped\tbudget of %ss spent\n' "$name" "$budget" >> "$out/steps.tsv"
    echo "gpu-run: $name: skipped (the call's budget of $budget s is spent)" >&2
    return
  fi
  (( seconds > budget - SECONDS )) && seconds=$((budget - SECONDS))
  local started=$SECONDS
  timeout "$seconds" "$@" > "$out/log/$name.txt" 2>&1
  local rc=$?
  printf '%s\t%s\t%ss\n' "$name" "$rc" "$((SECONDS - started))" >> "$out/steps.tsv"
  echo "gpu-run: $name: exit $rc after $((SECONDS - started)) s" >&2
}

: > "$out/steps.tsv"
{ nvidia-smi || echo "no nvidia-smi"; echo; vulkaninfo --summary 2>/dev/null || echo "no vulkaninfo"; } > "$out/machine.txt" 2>&1

# Rosetta and its peer measurement by measurement, so a step that hangs costs one comparison,
# not a whole side.
reference=scripts/reference
torch_step() {
  local name="$1" script="$2"; shift 2
  step "$name" 60 sh -c "'$python' $reference/$script '$model' $* --device $torch_device > '$out/results/$name.json'"
}
step rosetta-forward 90 "$rosetta" bench forward "$model" --device wgpu --precision f32 --batch "$batches" --seq "$seq" --no-reference --json "$out/results/rosetta-forward.json"
step rosetta-forward-packed 90 "$rosetta" bench forward "$model" --device wgpu --batch "$batches" --seq "$seq" --no-reference --json "$out/results/rosetta-forward-packed.json"
for dtype in float32 bfloat16; do
  torch_step "torch-forward-$dtype" bench_forward.py --batch "$batches" --seq "$seq" --dtype "$dtype"
done
step rosetta-generate 90 "$rosetta" bench generate "$model" --device wgpu --precision f32 --batch "$batches" --prompt-tokens "$seq" --new-tokens "$new" --no-reference --json "$out/results/rosetta-generate.json"
step rosetta-generate-packed 90 "$rosetta" bench generate "$model" --device wgpu --batch "$batches" --prompt-tokens "$seq" --new-tokens "$new" --no-reference --json "$out/results/rosetta-generate-packed.json"
for dtype in float32 bfloat16; do
  torch_step "torch-generate-$dtype" bench_generate.py --batch "$batches" --prompt-tokens "$seq" --new-tokens "$new" --dtype "$dtype"
done
step rosetta-train 120 "$rosetta" bench train "$model" --device wgpu --batch "$train_batch" --seq "$train_seq" --no-reference --json "$out/results/rosetta-train.json"
for dtype in float32 bfloat16; do
  for lora in 0 8; do
    torch_step "torch-train-$dtype-lora$lora" bench_train.py --batch "$train_batch" --seq "$train_seq" --lora-rank "$lora" --dtype "$dtype"
  done
done
step rosetta-kernels 45 "$rosetta" bench kernels --device wgpu --n "$kernel_n" --json "$out/results/rosetta-kernels.json"
# Mixed precision on the GPU: f16 compute, f32 master weights (WebGPU has no bf16).
step rosetta-train-f16 90 "$rosetta" bench train "$model" --device wgpu --modes full --train-precision f16 --batch "$train_batch" --seq "$train_seq" --no-reference --json "$out/results/rosetta-train-f16.json"

"$python" scripts/gpu/summary.py "$out" > "$out/summary.md" 2> "$out/log/summary.txt" || echo "summary failed: see log/summary.txt" >&2
cat "$out/summary.md" "$out/steps.tsv" >&2
