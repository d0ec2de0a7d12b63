"""Exports a GGUF for transformers.js, the browser peer of the lab (scripts/setup-transformersjs.sh
runs it). Nothing is downloaded: the GGUF is dequantised by transformers (as the PyTorch peers load
it), written as an HF directory, and onnxruntime-genai's model builder makes the ONNX graph with
its weights re-quantized to 4 bits in blocks of 32 with a zero point (`MatMulNBits`, the nearest
ONNX format to the GGUF's Q4_1) — the same recipe as the int4 SmolLM2 exports published for
transformers.js. The result is laid out as transformers.js reads a local model:
`DIR/config.json`, `generation_config.json`, the tokenizer, and one file per precision:
`onnx/model_q4.onnx` (4-bit blocks), `onnx/model_quantized.onnx` (transformers.js's "q8", its
default on WebAssembly) and `onnx/model.onnx` (f32).

    python transformersjs_export.py MODEL.gguf DIR
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))


def main(gguf, out):
    from loading import save_dense
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as work:
        dense = os.path.join(work, "dense")
        save_dense(gguf, dense, os.cpu_count())
        directory, name = os.path.split(os.path.abspath(gguf))
        AutoTokenizer.from_pretrained(directory, gguf_file=name).save_pretrained(dense)
        config_path = os.path.join(dense, "config.json")
        with open(config_path) as f:
            config = json.load(f)
        # A config read from a GGUF names no architecture; the builder dispatches on it.
        if not config.get("architectures"):
            config["architectures"] = {"llama": ["LlamaForCausalLM"]}[config["model_type"]]
        with open(config_path, "w") as f:
            json.dump(config, f, indent=2)
        head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
        os.makedirs(os.path.join(out, "onnx"), exist_ok=True)
        q4 = build(dense, os.path.join(work, "int4"), "int4", work)
        place(q4, head_dim, os.path.join(out, "onnx", "model_q4.onnx"))
        # transformers.js's default on WebAssembly ("q8"): int8 weights with activations
        # quantized at run time (`quantize_dynamic`, as its own conversion script makes them).
        from onnxruntime.quantization import QuantType, quantize_dynamic

        f32 = build(dense, os.path.join(work, "fp32"), "fp32", work)
        # "fp32": the GGUF's values exactly (its logits match PyTorch's within 1e-4).
        place(f32, head_dim, os.path.join(out, "onnx", "model.onnx"))
        q8 = os.path.join(work, "model_quantized.onnx")
        quantize_dynamic(f32, q8, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)
        place(q8, head_dim, os.path.join(out, "onnx", "model_quantized.onnx"))
        for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(dense, name), out)
        keys = ("bos_token_id", "eos_token_id", "pad_token_id")
        with open(os.path.join(out, "generation_config.json"), "w") as f:
            json.dump({k: config.get(k) for k in keys}, f)


def build(dense, out, precision, work):
    """onnxruntime-genai's model builder on the HF directory `dense`; returns the graph's path."""
    options = ["accuracy_level=4", "shared_embeddings=false"]
    if precision == "int4":
        options += ["block_size=32", "is_symmetric=false"]
    # shared_embeddings=false: onnxruntime-web's reduced-type build refuses the shared 4-bit
    # table's uint8 reshape, so the input embedding stays f32 (a lookup, not compute).
    subprocess.run(
        [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", dense, "-o", out, "-p", precision, "-e", "cpu",
         "-c", os.path.join(work, "cache"), "--extra_options", *options],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return os.path.join(out, "model.onnx")


def place(built, head_dim, path):
    """The graph at `built` as transformers.js loads it, written to `path` in one file (under
    protobuf's 2 GB, so transformers.js needs no external-data option). transformers.js sizes the
    empty cache of a first pass from the graph's input shapes, reading a named dimension as 0; the
    builder names the head dimension, so it is written as a number."""
    import onnx

    graph = onnx.load(built)
    for value in list(graph.graph.input) + list(graph.graph.output):
        if value.name.startswith(("past_key_values.", "present.")):
            value.type.tensor_type.shape.dim[3].dim_value = head_dim
    onnx.save_model(graph, path, save_as_external_data=False)

if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
