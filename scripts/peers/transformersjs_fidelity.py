"""What each precision of the transformers.js peer does to the model's answers, beside Rosetta's:
the greedy continuation of each prompt by PyTorch on the GGUF's dequantised weights (f32, the
reference), by each ONNX file the peer runs (onnxruntime on the CPU: the same graph and operators
as onnxruntime-web's WebAssembly build), and by `rosetta generate` on the GGUF. Prints JSON: per
prompt and engine, the continuation and how many of its tokens agree with the reference before
the first difference.

    python transformersjs_fidelity.py MODEL.gguf PEER_MODEL_DIR ROSETTA_BIN [--tokens N] PROMPT...
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))

FILES = {"q8": "model_quantized.onnx", "q4": "model_q4.onnx", "fp32": "model.onnx"}


def onnx_greedy(session, ids, steps, head_dim, eos):
    """Greedy decoding with the graph's own KV cache, as transformers.js feeds it; stops after an
    end-of-sequence token, as the others do."""
    inputs = {i.name: i for i in session.get_inputs()}
    cache = {n: np.zeros((1, i.shape[1], 0, head_dim), np.float32) for n, i in inputs.items() if n.startswith("past_key_values.")}
    layers = len(cache) // 2
    out, step_ids, seen = [], np.array([ids], np.int64), len(ids)
    while len(out) < steps and (not out or out[-1] != eos):
        feeds = {"input_ids": step_ids, "attention_mask": np.ones((1, seen), np.int64), **cache}
        results = session.run(None, feeds)
        by_name = dict(zip([o.name for o in session.get_outputs()], results))
        token = int(by_name["logits"][0, -1].argmax())
        out.append(token)
        for layer in range(layers):
            for part in ("key", "value"):
                cache[f"past_key_values.{layer}.{part}"] = by_name[f"present.{layer}.{part}"]
        step_ids, seen = np.array([[token]], np.int64), seen + 1
    return out


def agreeing(tokens, reference):
    n = 0
    while n < min(len(tokens), len(reference)) and tokens[n] == reference[n]:
        n += 1
    return n


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("gguf")
    parser.add_argument("peer_dir")
    parser.add_argument("rosetta")
    parser.add_argument("prompts", nargs="+")
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()

    import onnxruntime as ort
    import torch
    from loading import load
    from transformers import AutoTokenizer

    model = load(args.gguf, os.cpu_count())
    directory, name = os.path.split(os.path.abspath(args.gguf))
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    sessions = {k: ort.InferenceSession(os.path.join(args.peer_dir, "onnx", f), providers=["CPUExecutionProvider"])
                for k, f in FILES.items() if os.path.exists(os.path.join(args.peer_dir, "onnx", f))}
    report = []
    for prompt in args.prompts:
        ids = tokenizer(prompt)["input_ids"]
        with torch.no_grad():
            generated = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                       max_new_tokens=args.tokens, do_sample=False)
        reference = generated[0, len(ids):].tolist()
        text = lambda tokens: tokenizer.decode(tokens, skip_special_tokens=True)
        entry = {"prompt": prompt, "reference": {"engine": "PyTorch f32", "text": text(reference)}, "engines": {}}
        for kind, session in sessions.items():
            tokens = onnx_greedy(session, ids, args.tokens, head_dim, tokenizer.eos_token_id)
            entry["engines"][f"transformers.js {kind}"] = {"agreeing_tokens": agreeing(tokens, reference), "text": text(tokens)}
        # Rosetta prints the prompt and its continuation; its continuation is compared token by
        # token after re-tokenizing (identical text tokenizes identically).
        printed = subprocess.run([args.rosetta, "generate", "-p", prompt, "--max-new-tokens", str(args.tokens), args.gguf],
                                 check=True, capture_output=True, text=True).stdout
        continuation = printed[len(prompt):] if printed.startswith(prompt) else printed
        tokens = tokenizer(continuation, add_special_tokens=False)["input_ids"]
        entry["engines"]["Rosetta"] = {
            "agreeing_tokens": len(reference) if continuation.strip() == text(reference).strip() else agreeing(tokens, reference),
            "text": continuation,
        }
        entry["reference"]["tokens"] = len(reference)
        report.append(entry)
    print(json.dumps({"tokens": args.tokens, "prompts": report}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
