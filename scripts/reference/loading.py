"""Loading a model for the PyTorch peer benchmarks: an HF directory or a .gguf file (dequantised
by transformers to float32), on CPU with a given number of threads."""
import os

import torch
from transformers import AutoModelForCausalLM


def load_float32(path, threads):
    torch.set_num_threads(threads)
    if path.endswith(".gguf"):
        directory, name = os.path.split(os.path.abspath(path))
        return AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
