"""Writes a GGUF file with one tensor per quantisation type and the values the `gguf` package
dequantises them to.

usage: make_quant_gguf.py OUT_GGUF OUT_JSON

Types gguf can quantise (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, F16, BF16) are quantised from random
floats; for the k-quants (Q2_K..Q6_K), which it can only dequantise, the blocks are random bytes
with finite f16 scales — a dequantiser must get any block right, not just well-formed ones.
"""
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T, quants

from common import write_json

# Byte offsets of the f16 scale fields inside one k-quant block.
K_SCALE_OFFSETS = {T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208]}
ROWS, COLS = 3, 512


def main(out_gguf, out_json):
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(out_gguf, "llama")
    reference = {}
    for qtype in [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0,
                  T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]:
        name = f"t.{qtype.name}"
        values = rng.standard_normal((ROWS, COLS)).astype(np.float32)
        if qtype == T.F32:
            writer.add_tensor(name, values)
            reference[name] = values.flatten().tolist()
            continue
        if qtype in K_SCALE_OFFSETS:
            block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
            n_blocks = ROWS * COLS // block_size
            raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
            for offset in K_SCALE_OFFSETS[qtype]:
                scales = rng.uniform(-0.1, 0.1, size=n_blocks).astype(np.float16)
                raw[:, offset:offset + 2] = scales.view(np.uint8).reshape(n_blocks, 2)
            raw = raw.reshape(ROWS, -1)
        else:
            raw = quants.quantize(values, qtype)
        writer.add_tensor(name, raw, raw_shape=raw.shape if qtype == T.F16 else None, raw_dtype=qtype)
        reference[name] = quants.dequantize(np.asarray(raw).view(np.uint8) if qtype != T.F16 else raw, qtype).flatten().tolist()
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    write_json(out_json, reference)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
