"""The GPU run's results side by side (scripts/gpu/run.sh): Rosetta on wgpu next to PyTorch eager
on the same GPU, tokens/s, the ratio Rosetta / PyTorch, and model FLOPs utilisation against the
card's peak (GPU_PEAK_TFLOPS_F32, GPU_PEAK_TFLOPS_BF16; defaults: an H100 SXM's dense 67 and 989).

usage: summary.py OUT_DIR   (reads OUT_DIR/results/*.json, prints Markdown)

MFU counts 2·N FLOPs per token forward and 6·N per trained token (N: the model's parameters,
GPU_MODEL_PARAMETERS, default SmolLM2-135M's 134.5 M); attention's own FLOPs are left out.
"""
import json
import os
import sys

out = sys.argv[1]
N = float(os.environ.get("GPU_MODEL_PARAMETERS", 134.5e6))
PEAK = {"float32": float(os.environ.get("GPU_PEAK_TFLOPS_F32", 67)) * 1e12,
        "bfloat16": float(os.environ.get("GPU_PEAK_TFLOPS_BF16", 989)) * 1e12}


def read(name):
    try:
        with open(os.path.join(out, "results", name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def fmt(value):
    return "—" if value is None else f"{value:,.0f}"


def ratio(a, b):
    return "—" if a is None or not b else f"{a / b:.2f}×"


def mfu(tokens_per_second, flops_per_token, dtype):
    return "—" if tokens_per_second is None else f"{100 * tokens_per_second * flops_per_token / PEAK[dtype]:.1f} %"


rows = []
forward = read("rosetta-forward.json")
generate = read("rosetta-generate.json")
forward_packed = read("rosetta-forward-packed.json")
generate_packed = read("rosetta-generate-packed.json")
train = read("rosetta-train.json")
torch_f = {d: read(f"torch-forward-{d}.json") for d in PEAK}
torch_g = {d: read(f"torch-generate-{d}.json") for d in PEAK}
torch_t = {(d, r): read(f"torch-train-{d}-lora{r}.json") for d in PEAK for r in (0, 8)}


def by_batch(results, key, batch):
    for r in (results or {}).get("results" if "results" in (results or {}) else "rosetta", []):
        if r.get("batch") == batch:
            return r.get(key)
    return None


batches = sorted({r["batch"] for r in (forward or {}).get("rosetta", [])} | {r["batch"] for r in (torch_f["float32"] or {}).get("results", [])})
print("# GPU run: Rosetta (wgpu, f32, the GPU build with burn's autotuning) beside PyTorch eager (CUDA)\n")
gpu = next((t.get("gpu") for t in list(torch_f.values()) + list(torch_g.values()) if t and t.get("gpu")), "unknown GPU")
print(f"GPU: {gpu}. MFU against {PEAK['float32'] / 1e12:.0f} TFLOP/s (f32) and {PEAK['bfloat16'] / 1e12:.0f} TFLOP/s (bf16).\n")
print("| measurement | Rosetta wgpu f32 | PyTorch f32 | ratio | PyTorch bf16 | ratio | Rosetta MFU |")
print("|---|---|---|---|---|---|---|")
for batch in batches:
    mine = by_batch(forward, "tokens_per_second", batch)
    f32, bf16 = (by_batch(torch_f[d], "tokens_per_second", batch) for d in ("float32", "bfloat16"))
    print(f"| forward, batch {batch} | {fmt(mine)} | {fmt(f32)} | {ratio(mine, f32)} | {fmt(bf16)} | {ratio(mine, bf16)} | {mfu(mine, 2 * N, 'float32')} |")
    for phase in ("prefill", "decode"):
        key = f"{phase}_tokens_per_second"
        mine = by_batch(generate, key, batch)
        f32, bf16 = (by_batch(torch_g[d], key, batch) for d in ("float32", "bfloat16"))
        print(f"| {phase}, batch {batch} | {fmt(mine)} | {fmt(f32)} | {ratio(mine, f32)} | {fmt(bf16)} | {ratio(mine, bf16)} | {mfu(mine, 2 * N, 'float32')} |")
for mode, rank in (("full", 0), ("lora", 8)):
    mine = next((r["rosetta"]["tokens_per_second"] for r in (train or {}).get("results", []) if r.get("mode") == mode and r.get("rosetta")), None)
    f32, bf16 = ((torch_t[(d, rank)] or {}).get("tokens_per_second") for d in ("float32", "bfloat16"))
    print(f"| train {mode}, batch {(train or {}).get('batch', '?')} × {(train or {}).get('seq', '?')} | {fmt(mine)} | {fmt(f32)} | {ratio(mine, f32)} | {fmt(bf16)} | {ratio(mine, bf16)} | {mfu(mine, 6 * N, 'float32')} |")
print("\nThe same GGUF kept in its Q4_1 blocks on the GPU (the WGSL quantized matmul), beside the f32 load above:\n")
print("| measurement | Rosetta wgpu Q4_1 packed | Rosetta wgpu f32 | packed / f32 |")
print("|---|---|---|---|")
for batch in batches:
    rows = [("forward", forward_packed, forward, "tokens_per_second")]
    rows += [(phase, generate_packed, generate, f"{phase}_tokens_per_second") for phase in ("prefill", "decode")]
    for label, packed, dense, key in rows:
        a, b = by_batch(packed, key, batch), by_batch(dense, key, batch)
        print(f"| {label}, batch {batch} | {fmt(a)} | {fmt(b)} | {ratio(a, b)} |")
train_f16 = read("rosetta-train-f16.json")
f16 = next((r["rosetta"]["tokens_per_second"] for r in (train_f16 or {}).get("results", []) if r.get("rosetta")), None)
print(f"\nRosetta's full training step with f16 compute and f32 master weights (`--train-precision f16`): {fmt(f16)} tokens/s.")
print("\nThe table's Rosetta training is f32 (wgpu has no bf16); PyTorch bf16 trains under autocast with f32 master weights.")
long_ours, long_torch = read("rosetta-generate-long.json"), read("torch-generate-long-float32.json")
if long_ours or long_torch:
    prompt = (long_ours or long_torch or {}).get("prompt_tokens", "?")
    new = (long_ours or long_torch or {}).get("new_tokens", "?")
    print(f"\nA longer generation, batch 1, {prompt}-token prompt and {new} new tokens (f32):\n")
    print("| phase | Rosetta wgpu | PyTorch | ratio |")
    print("|---|---|---|---|")
    for phase in ("prefill", "decode"):
        key = f"{phase}_tokens_per_second"
        a, b = by_batch(long_ours, key, 1), by_batch(long_torch, key, 1)
        print(f"| {phase} | {fmt(a)} | {fmt(b)} | {ratio(a, b)} |")
input_major = {kind: read(f"rosetta-{kind}-input-major.json") for kind in ("forward", "generate")}
if any(input_major.values()):
    print("\nDense weights input-major (`ROSETTA_WGPU_DENSE_LAYOUT=input-major`) beside the default output-major layout (f32):\n")
    print("| measurement | input-major | output-major | ratio |")
    print("|---|---|---|---|")
    for batch in batches:
        rows = [("forward", input_major["forward"], forward, "tokens_per_second")]
        rows += [(phase, input_major["generate"], generate, f"{phase}_tokens_per_second") for phase in ("prefill", "decode")]
        for label, ours, default, key in rows:
            a, b = by_batch(ours, key, batch), by_batch(default, key, batch)
            print(f"| {label}, batch {batch} | {fmt(a)} | {fmt(b)} | {ratio(a, b)} |")
    launches = by_batch(input_major["generate"], "decode_step_launches", 1)
    if launches:
        print(f"\nLaunches per decode step, input-major: {launches['total']:.0f}.")


plain = {kind: read(f"rosetta-plain-{kind}.json") for kind in ("forward", "generate", "train")}
if any(plain.values()):
    print("\nburn's kernel autotuning: the GPU build above (`--features gpu`) beside the plain `--features wgpu` build (f32):\n")
    print("| measurement | with autotuning | without | ratio |")
    print("|---|---|---|---|")
    for batch in batches:
        rows = [("forward", forward, plain["forward"], "tokens_per_second")]
        rows += [(phase, generate, plain["generate"], f"{phase}_tokens_per_second") for phase in ("prefill", "decode")]
        for label, tuned, untuned, key in rows:
            a, b = by_batch(tuned, key, batch), by_batch(untuned, key, batch)
            print(f"| {label}, batch {batch} | {fmt(a)} | {fmt(b)} | {ratio(a, b)} |")
    tuned_train = next((r["rosetta"]["tokens_per_second"] for r in (train or {}).get("results", []) if r.get("mode") == "full" and r.get("rosetta")), None)
    plain_train = next((r["rosetta"]["tokens_per_second"] for r in (plain["train"] or {}).get("results", []) if r.get("rosetta")), None)
    print(f"| train full | {fmt(tuned_train)} | {fmt(plain_train)} | {ratio(tuned_train, plain_train)} |")


def step_peaks():
    """Each step's highest device memory (MiB, nvidia-smi: the whole process, context included)."""
    peaks = {}
    try:
        with open(os.path.join(out, "steps.tsv")) as f:
            for line in f:
                fields = line.rstrip("\n").split("\t")
                if len(fields) >= 4 and fields[3].isdigit():
                    peaks[fields[0]] = int(fields[3])
    except OSError:
        pass
    return peaks


checkpointed = read("rosetta-train-checkpointing.json")
torch_checkpointed = read("torch-train-float32-lora0-checkpointing.json")
if checkpointed or torch_checkpointed:
    peaks = step_peaks()

    def rosetta_full(result):
        return next((r["rosetta"]["tokens_per_second"] for r in (result or {}).get("results", []) if r.get("mode") == "full" and r.get("rosetta")), None)

    def mib(value):
        return "—" if value is None else f"{value:,.0f} MiB"

    def reserved(result):
        value = (result or {}).get("peak_gpu_reserved_bytes")
        return None if value is None else value / 2**20

    print("\nActivation checkpointing by decoder layer, full training step, f32 "
          f"(batch {(train or {}).get('batch', '?')} × {(train or {}).get('seq', '?')}):\n")
    print("| run | tokens/s | device memory at its highest |")
    print("|---|---|---|")
    print(f"| Rosetta, every activation kept | {fmt(rosetta_full(train))} | {mib(peaks.get('rosetta-train'))} (full and LoRA steps, one process) |")
    print(f"| Rosetta, checkpointed layers | {fmt(rosetta_full(checkpointed))} | {mib(peaks.get('rosetta-train-checkpointing'))} |")
    print(f"| PyTorch, every activation kept | {fmt((torch_t[('float32', 0)] or {}).get('tokens_per_second'))} | {mib(reserved(torch_t[('float32', 0)]))} reserved |")
    print(f"| PyTorch, gradient checkpointing | {fmt((torch_checkpointed or {}).get('tokens_per_second'))} | {mib(reserved(torch_checkpointed))} reserved |")
    print("\nRosetta's memory is nvidia-smi's reading for its process (Vulkan context and cubecl's pools "
          "included); PyTorch's is its caching allocator's reserved peak, without the CUDA context (about 0.5 GB).")

def kernel_table(what, timed):
    """One step's kernel time by kernel (`bench generate|train --device wgpu`), beside its wall time."""
    share = 100 * timed["kernel_seconds"] / max(timed["step_seconds"], 1e-12)
    print(f"\n{what}: {1e3 * timed['kernel_seconds']:.2f} ms in kernels (over the timed run, "
          f"{timed['device_timed_launches']} launches timed on the device, {timed['host_timed_launches']} on the host) of the untimed step's "
          f"{1e3 * timed['step_seconds']:.2f} ms ({share:.0f} %); the rest is the host issuing launches and waiting.\n")
    print("| kernel | launches a step | ms a step |")
    print("|---|---|---|")
    for name, t in sorted(timed["by_kernel"].items(), key=lambda kv: -kv[1]["seconds"]):
        print(f"| {name} | {t['launches']:.0f} | {1e3 * t['seconds']:.3f} |")


for batch in sorted({r["batch"] for r in (generate or {}).get("rosetta", [])}):
    timed = by_batch(generate, "decode_step_kernel_time", batch)
    if timed:
        kernel_table(f"One decode step at batch {batch}", timed)
for r in (train or {}).get("results", []):
    timed = (r.get("rosetta") or {}).get("step_kernel_time")
    if timed:
        kernel_table(f"One {r.get('mode')} training step, batch {(train or {}).get('batch', '?')} × {(train or {}).get('seq', '?')}", timed)

launches = by_batch(generate, "decode_step_launches", 1)
if launches:
    top = sorted(launches.get("by_kernel", {}).items(), key=lambda kv: -kv[1])[:6]
    print(f"\nKernel launches per decode step (batch 1): {launches['total']:.0f} — "
          + ", ".join(f"{name} {n:.0f}" for name, n in top) + ".")

lab = read("rosetta-lab.json")
if lab:
    shift, sparsity = lab.get("shift", {}), lab.get("sparsity", {})

    def sec(value):
        return "—" if value is None else f"{value:.2f} s"

    print(f"\nThe web lab's rooms on wgpu (`bench lab`; the browser's budgets in reports/lab/): model ready "
          f"{sec(lab.get('load_seconds'))}, forward {fmt(lab.get('forward_tokens_per_second'))} tokens/s (batch 1 × 64), "
          f"decode {fmt(lab.get('decode_tokens_per_second'))} tokens/s, geometry {sec(lab.get('geometry_seconds'))}, "
          f"strength change: next-token view {sec(shift.get('next_token_seconds'))} and bits/char of "
          f"{shift.get('sentences', '?')} sentences {sec(shift.get('bits_per_char_seconds'))}, features room "
          f"{sec(lab.get('features_seconds'))}, sparsity change {sec(sparsity.get('seconds'))}.")
