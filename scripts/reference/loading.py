"""Loading a model for the PyTorch peer benchmarks: an HF directory or a .gguf file (dequantised
by transformers), on the CPU with a given number of threads, or on a GPU (`--device cuda`,
`scripts/gpu/run.sh`), in float32 or bfloat16.

The options every benchmark script shares live here too: `--threads`, `--device`, `--dtype`."""
import json
import os
import time

import torch
from transformers import AutoModelForCausalLM

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def add_device_options(parser):
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))


def load(path, threads, device="cpu", dtype="float32"):
    torch.set_num_threads(threads)
    kind = DTYPES[dtype]
    if path.endswith(".gguf"):
        directory, name = os.path.split(os.path.abspath(path))
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=kind)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=kind)
    return model.to(device)


def load_float32(path, threads):
    return load(path, threads)


def clock(device):
    """`time.perf_counter()` after the device's queued work is done (GPU kernels run async)."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter()


def describe(args):
    """What every script's JSON says about where it ran."""
    where = {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": args.device, "dtype": args.dtype}
    if args.device.startswith("cuda"):
        where["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    return where


def save_dense(path, directory, threads):
    """Writes a model (a .gguf: dequantised) as an HF directory of f32 safetensors, so that later
    loads skip the dequantisation (15–20 s for a GGUF; `scripts/gpu/run.sh` loads once per step).
    transformers refuses `save_pretrained` on a model read from a GGUF, hence the config and the
    tensors written directly (`save_model` keeps one copy of the tied embedding)."""
    from safetensors.torch import save_model

    model = load(path, threads)
    os.makedirs(directory, exist_ok=True)
    config = model.config.to_dict()
    config.pop("quantization_config", None)  # the GGUF's; the tensors written are plain f32
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    save_model(model, os.path.join(directory, "model.safetensors"))
