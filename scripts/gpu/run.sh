#!/usr/bin/env bash
# The GPU run (issue 19), on a lent GPU machine (no network; PyTorch and transformers installed).
# Prepared here by scripts/gpu/prepare.sh, which prints the calls; on the same warm machine:
#
#   scripts/gpu/run.sh receive   # carry out/gpu/carryK (K < N): keeps what it brings, and once the
#                                # binary is there, unpacks it and tries the Vulkan adapter
#   scripts/gpu/run.sh measure   # carry out/gpu/carryN: the last bytes, then every measurement
#
# `measure` leaves in $OUT (the device tool brings back at most 8 files; commit them under
# reports/gpu/, the archive unpacked):
#   summary.md, steps.tsv, machine.txt   tokens/s side by side, ratios, MFU; each step's status
#   gpu-run.tar.gz                       results/rosetta-*.json: `rosetta bench forward|generate|
#                                        train|kernels --device wgpu` (f32; the GPU build, with
#                                        burn's autotuning; on a GPU each also times one decode or
#                                        training step's kernels), forward/generate on the
#                                        Q4_1 blocks kept packed (the WGSL kernel), a full training
#                                        step in f16 with f32 master weights, one with activation
#                                        checkpointing, a longer generation, forward/generate with
#                                        dense weights input-major, and forward/generate/
#                                        train with the plain build (rosetta-plain-*.json: no
#                                        autotuning), the web lab's rooms (`bench lab`,
#                                        rosetta-lab.json); results/torch-*.json: the same
#                                        in PyTorch eager on CUDA, f32 and bf16, in one process;
#                                        log/*.txt (and log/*.memory: nvidia-smi every 100 ms)
# Each step is bounded in time and a failed step is recorded, not fatal: one short call should
# bring back everything that worked. GPU_RUN_QUICK=1 runs the smallest sizes (a smoke test, also
# on a CPU-only machine with lavapipe: GPU_RUN_TORCH_DEVICE=cpu).
set -uo pipefail
cd "$(dirname "$0")/../.."
work=out/gpu/work
out="${OUT:-out/gpu/returned}"
torch_device="${GPU_RUN_TORCH_DEVICE:-cuda}"
python="${ROSETTA_PYTHON:-python3}"
# The build measured against PyTorch: the GPU build (`--features gpu`: wgpu with burn's kernel
# autotuning, carried as rosetta-autotune); the plain `--features wgpu` build (every matmul
# cubecl's default tile kernel, what the tests run on lavapipe) beside it on a few steps, unless
# GPU_RUN_PLAIN=0.
rosetta="$work/rosetta-autotune"
plain="$work/rosetta"

# The Vulkan loader: the GPU image has the NVIDIA driver and its ICD file but no libvulkan.
use_vulkan() {
  if ! ldconfig -p | grep -q 'libvulkan.so.1' && compgen -G "$work/debs/*.deb" > /dev/null; then
    for deb in "$work"/debs/*.deb; do dpkg -x "$deb" /; done
    ldconfig
  fi
  local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  if [[ -f "$icd" ]] && ! compgen -G '/usr/share/vulkan/icd.d/*.json' > /dev/null \
    && ! compgen -G '/etc/vulkan/icd.d/*.json' > /dev/null; then
    export VK_DRIVER_FILES="$icd"
  fi
}

# Keeps what this call carried; unpacks the binary once it is there.
receive() {
  mkdir -p "$work"
  for carry in out/gpu/carry*/; do
    [[ -d "$carry" ]] && cp -rn "$carry". "$work/"
  done
  for binary in rosetta rosetta-autotune; do
    if [[ -f "$work/$binary.xz" && ! -x "$work/$binary" ]]; then
      xz -d -c "$work/$binary.xz" > "$work/$binary" && chmod +x "$work/$binary"
    fi
  done
  ls -la "$work"
  if [[ -x "$rosetta" ]]; then
    use_vulkan
    "$rosetta" --version
  fi
}

case "${1:-}" in
  receive)
    receive
    # A first try of the adapter, so a missing driver shows before the measuring call.
    [[ -x "$rosetta" ]] && timeout 120 "$rosetta" bench kernels --device wgpu --n 64 --d 576 \
      --mask-shapes 1536x576 --packed-rows 1 --packed-shapes 576x576 --iters 1
    exit 0
    ;;
  measure) receive ;;
  *) echo "usage: scripts/gpu/run.sh receive|measure" >&2; exit 2 ;;
esac

results="$work/measured"
rm -rf "$results"
mkdir -p "$results/results" "$out"
model="$work/SmolLM2-135M-Instruct.Q4_1.gguf"
carries="$(cat "$work/carries" 2>/dev/null || echo 0)"
if [[ ! -f "$model" ]]; then
  for ((k = 1; k <= carries; k++)); do cat "$work/model.part$k"; done > "$model"
fi
if ! (cd "$work" && sha256sum -c manifest.sha256); then
  rm -f "$model"
  echo "the reassembled model or binary does not match its checksum: run 'receive' with each carry first, on the same machine" >&2
  exit 1
fi
export PYTHONPATH="$PWD/$work${PYTHONPATH:+:$PYTHONPATH}"
quick="${GPU_RUN_QUICK:-0}"
if [[ "$quick" == 1 ]]; then
  batches=1; seq=32; new=8; train_batch=1; train_seq=32; kernel_n=64; long_prompt=64; long_new=16
else
  batches=1,8; seq=128; new=64; train_batch=4; train_seq=256; kernel_n=64,256,1024; long_prompt=512; long_new=256
fi

# The whole call's budget (the device tool stops a command at 600 s): a step that would start
# past it is recorded as skipped, so what ran still comes back.
budget="${GPU_RUN_BUDGET_S:-540}"

# Whatever happens, what was measured goes back in at most 8 files.
bring_back() {
  cp "$results/summary.md" "$results/steps.tsv" "$results/machine.txt" "$out/" 2>/dev/null
  tar -C "$results" -czf "$out/gpu-run.tar.gz" results log 2>/dev/null
}
trap bring_back EXIT

# Runs one step with a time limit; its output goes to $results/log/<name>.txt, its status to
# steps.tsv: name, exit status, seconds, and the device memory the GPU held at its highest while the
# step ran (nvidia-smi every 100 ms, MiB, the process's context and pools included; "—" without it).
step() {
  local name="$1" seconds="$2"; shift 2
  mkdir -p "$results/log"
  if (( SECONDS + 10 > budget )); then
    printf '%s\tskipped\tbudget of %ss spent\n' "$name" "$budget" >> "$results/steps.tsv"
    echo "gpu-run: $name: skipped (the call's budget of $budget s is spent)" >&2
    return
  fi
  (( seconds > budget - SECONDS )) && seconds=$((budget - SECONDS))
  local started=$SECONDS sampler=""
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$results/log/$name.memory" 2>/dev/null &
    sampler=$!
  fi
  timeout "$seconds" "$@" > "$results/log/$name.txt" 2>&1
  local rc=$?
  local peak="—"
  if [[ -n "$sampler" ]]; then
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
    peak="$(sort -n "$results/log/$name.memory" | tail -1)"
  fi
  printf '%s\t%s\t%ss\t%s\n' "$name" "$rc" "$((SECONDS - started))" "${peak:-—}" >> "$results/steps.tsv"
  echo "gpu-run: $name: exit $rc after $((SECONDS - started)) s, peak device memory ${peak:-—} MiB" >&2
}

: > "$results/steps.tsv"
{ nvidia-smi || echo "no nvidia-smi"; echo; vulkaninfo --summary 2>/dev/null || echo "no vulkaninfo";
  echo; ldconfig -p | grep -E 'libvulkan|libEGL' || echo "no Vulkan loader"; echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-}";
  nproc; grep -m1 'model name' /proc/cpuinfo; "$python" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'; } > "$results/machine.txt" 2>&1

reference=scripts/reference
# transformers dequantises a GGUF in Python (15–20 s a load): once, into an HF directory (f32
# safetensors) that every PyTorch job then loads in about a second.
hf_model="$work/hf-f32"
if [[ ! -f "$hf_model/config.json" ]]; then
  step torch-convert 90 "$python" -c "import sys; sys.path.insert(0, '$reference'); from loading import save_dense; save_dense('$model', '$hf_model', 16)"
fi
[[ -f "$hf_model/config.json" ]] || hf_model="$model"

# Rosetta's side first, one process a step (each step's device memory peak is its own).
step rosetta-forward 90 "$rosetta" bench forward "$model" --device wgpu --precision f32 --batch "$batches" --seq "$seq" --no-reference --json "$results/results/rosetta-forward.json"
step rosetta-forward-packed 90 "$rosetta" bench forward "$model" --device wgpu --batch "$batches" --seq "$seq" --no-reference --json "$results/results/rosetta-forward-packed.json"
step rosetta-generate 90 "$rosetta" bench generate "$model" --device wgpu --precision f32 --batch "$batches" --prompt-tokens "$seq" --new-tokens "$new" --no-reference --json "$results/results/rosetta-generate.json"
step rosetta-generate-packed 90 "$rosetta" bench generate "$model" --device wgpu --batch "$batches" --prompt-tokens "$seq" --new-tokens "$new" --no-reference --json "$results/results/rosetta-generate-packed.json"
step rosetta-train 120 "$rosetta" bench train "$model" --device wgpu --batch "$train_batch" --seq "$train_seq" --no-reference --json "$results/results/rosetta-train.json"
# PyTorch's side in one process (scripts/reference/bench_suite.py): the first run spent 15-40 s a
# step importing torch and transformers and starting CUDA, more than the measurements took.
jobs="$results/torch-jobs.txt"
: > "$jobs"
for dtype in float32 bfloat16; do
  echo "torch-forward-$dtype bench_forward.py $hf_model --batch $batches --seq $seq --dtype $dtype --device $torch_device" >> "$jobs"
  echo "torch-generate-$dtype bench_generate.py $hf_model --batch $batches --prompt-tokens $seq --new-tokens $new --dtype $dtype --device $torch_device" >> "$jobs"
  for lora in 0 8; do
    echo "torch-train-$dtype-lora$lora bench_train.py $hf_model --batch $train_batch --seq $train_seq --lora-rank $lora --dtype $dtype --device $torch_device" >> "$jobs"
  done
done
echo "torch-generate-long-float32 bench_generate.py $hf_model --batch 1 --prompt-tokens $long_prompt --new-tokens $long_new --repeats 2 --dtype float32 --device $torch_device" >> "$jobs"
echo "torch-train-float32-lora0-checkpointing bench_train.py $hf_model --batch $train_batch --seq $train_seq --gradient-checkpointing 1 --dtype float32 --device $torch_device" >> "$jobs"
step torch-suite 300 env BENCH_SUITE_RESULTS="$results/results" "$python" "$reference/bench_suite.py" "$jobs" "$results/torch-steps.tsv"
cat "$results/torch-steps.tsv" >> "$results/steps.tsv" 2>/dev/null

# A longer generation at batch 1 (issue 17's KV cache reserved once, against transformers'
# DynamicCache, which concatenates every step): its own PyTorch job, in the suite above.
step rosetta-generate-long 90 "$rosetta" bench generate "$model" --device wgpu --precision f32 --batch 1 --prompt-tokens "$long_prompt" --new-tokens "$long_new" --repeats 2 --no-reference --json "$results/results/rosetta-generate-long.json"

# Dense weights input-major (HF's [out, in] rows viewed as burn's [in, out]): the layout the tuned
# matrix × vector kernels read without transposing the weight on every call (run 4: 210
# `CopyKernelPack` launches a decode step). Beside rosetta-forward/-generate above, to choose
# wgpu's default (`rosetta_model::DenseLayout`).
step rosetta-forward-input-major 90 env ROSETTA_WGPU_DENSE_LAYOUT=input-major "$rosetta" bench forward "$model" --device wgpu --precision f32 --batch "$batches" --seq "$seq" --no-reference --json "$results/results/rosetta-forward-input-major.json"
step rosetta-generate-input-major 90 env ROSETTA_WGPU_DENSE_LAYOUT=input-major "$rosetta" bench generate "$model" --device wgpu --precision f32 --batch "$batches" --prompt-tokens "$seq" --new-tokens "$new" --no-reference --json "$results/results/rosetta-generate-input-major.json"

# The web lab's model on WebGPU's native implementation (issues 19 and 20): the rooms the page's
# worker computes, with its sizes, as `rosetta bench lab` runs them — the nearest measurement of the
# page on this GPU, since the machine has no browser (reports/lab/ has the browser's numbers).
step rosetta-lab 120 "$rosetta" bench lab "$model" --device wgpu --json "$results/results/rosetta-lab.json"

# The plain build (no autotuning) on the same steps, for what burn's autotuning is worth.
if [[ "${GPU_RUN_PLAIN:-1}" == 1 && -x "$plain" ]]; then
  step rosetta-plain-forward 90 "$plain" bench forward "$model" --device wgpu --precision f32 --batch "$batches" --seq "$seq" --no-reference --json "$results/results/rosetta-plain-forward.json"
  step rosetta-plain-generate 90 "$plain" bench generate "$model" --device wgpu --precision f32 --batch "$batches" --prompt-tokens "$seq" --new-tokens "$new" --no-reference --json "$results/results/rosetta-plain-generate.json"
  step rosetta-plain-train 120 "$plain" bench train "$model" --device wgpu --modes full --batch "$train_batch" --seq "$train_seq" --no-reference --json "$results/results/rosetta-plain-train.json"
fi

# Activation checkpointing by layer (issue 18) on a GPU: the full step, against the one above and
# against transformers' gradient checkpointing.
step rosetta-train-checkpointing 120 "$rosetta" bench train "$model" --device wgpu --modes full --activation-checkpointing --batch "$train_batch" --seq "$train_seq" --no-reference --json "$results/results/rosetta-train-checkpointing.json"

step rosetta-kernels 45 "$rosetta" bench kernels --device wgpu --n "$kernel_n" --json "$results/results/rosetta-kernels.json"
# Mixed precision on the GPU: f16 compute, f32 master weights (WebGPU has no bf16).
step rosetta-train-f16 90 "$rosetta" bench train "$model" --device wgpu --modes full --train-precision f16 --batch "$train_batch" --seq "$train_seq" --no-reference --json "$results/results/rosetta-train-f16.json"

"$python" scripts/gpu/summary.py "$results" > "$results/summary.md" 2> "$results/log/summary.txt" || echo "summary failed: see log/summary.txt" >&2
cat "$results/summary.md" "$results/steps.tsv" >&2
