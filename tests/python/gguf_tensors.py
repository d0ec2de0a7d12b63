"""What the `gguf` package (llama.cpp's own Python reader) sees in a GGUF file.

usage: gguf_tensors.py FILE OUT_JSON
  OUT_JSON: {"architecture", "tensors": {name: {"type", "shape"}}, "tokens", "merges", "pre",
             "values": {name: first 64 dequantised values}}
"""
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

from common import write_json


def field(reader, key):
    f = reader.get_field(key)
    return None if f is None else f.contents()


def main(path, out_path):
    reader = GGUFReader(path)
    tensors, values = {}, {}
    for t in reader.tensors:
        # The reader lists dims in ggml order (fastest first); report them row-major like Rosetta.
        tensors[t.name] = {"type": t.tensor_type.name, "shape": [int(d) for d in reversed(t.shape.tolist())]}
        values[t.name] = dequantize(t.data, t.tensor_type).astype(np.float64).reshape(-1)[:64].tolist()
    write_json(out_path, {
        "architecture": field(reader, "general.architecture"),
        "tensors": tensors,
        "tokens": len(field(reader, "tokenizer.ggml.tokens") or []),
        "merges": len(field(reader, "tokenizer.ggml.merges") or []),
        "pre": field(reader, "tokenizer.ggml.pre"),
        "values": values,
    })


if __name__ == "__main__":
    main(*sys.argv[1:3])
