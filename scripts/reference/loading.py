"""Loading a model for the PyTorch peer benchmarks: an HF directory or a .gguf file (dequantised
by transformers), on the CPU with a given number of threads, or on a GPU (`--device cuda`,
`scripts/gpu/run.sh`), in float32 or bfloat16.

The options every benchmark script shares live here too: `--threads`, `--device`, `--dtype`."""
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
