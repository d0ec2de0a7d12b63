"""Logits of token id sequences under an HF model directory or a GGUF file, via transformers.

usage: hf_logits.py MODEL IN_JSON OUT_DIR
  MODEL: an HF directory, or a .gguf file (loaded with gguf_file=, dequantised to float32)
  IN_JSON: {"inputs": [[ids...], ...],
            "texts": ["...", ...]          (optional: tokenize with the transformers tokenizer),
            "greedy": N                    (optional: N greedy tokens after each input),
            "chat": [{"role", "content"}]  (optional: render the chat template),
            "float64": true                (optional: also logits of the model cast to float64),
            "adapter": DIR                 (optional: a PEFT adapter applied with PeftModel.from_pretrained),
            "make_adapter": {"dir", "r", "alpha", "targets", "seed"}
                                           (optional: first make a random PEFT LoRA adapter — B ≠ 0 —,
                                            save it to dir and apply it)}
  OUT_DIR/result.json: {"tokens", "greedy", "chat", "vocab_size", "seconds_load"}
  OUT_DIR/logits_<i>.f32 (and .f64): raw little-endian [seq, vocab] logits of input i
"""
import os
import sys
import time

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from common import read_json, write_json


def load(model_path):
    if model_path.endswith(".gguf"):
        directory, name = os.path.split(os.path.abspath(model_path))
        kwargs = dict(gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(directory, **kwargs)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    return model.eval(), tokenizer


def main(model_path, in_path, out_dir):
    request = read_json(in_path)
    os.makedirs(out_dir, exist_ok=True)
    start = time.time()
    model, tokenizer = load(model_path)
    if "make_adapter" in request:
        from peft import LoraConfig, get_peft_model
        spec = request["make_adapter"]
        torch.manual_seed(spec.get("seed", 0))
        config = LoraConfig(r=spec["r"], lora_alpha=spec["alpha"], target_modules=spec["targets"],
                            init_lora_weights=False, lora_dropout=0.0, task_type="CAUSAL_LM")
        model = get_peft_model(model, config).eval()
        model.save_pretrained(spec["dir"])
    elif "adapter" in request:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, request["adapter"]).eval()
    result = {"tokens": [], "vocab_size": model.config.vocab_size, "seconds_load": time.time() - start}
    inputs = request.get("inputs", [])
    with torch.no_grad():
        for i, ids in enumerate(inputs):
            logits = model(torch.tensor([ids])).logits[0].numpy().astype("<f4")
            logits.tofile(os.path.join(out_dir, f"logits_{i}.f32"))
        if "greedy" in request:
            result["greedy"] = []
            for ids in inputs:
                out = model.generate(torch.tensor([ids]), max_new_tokens=request["greedy"], do_sample=False,
                                     min_new_tokens=request["greedy"], pad_token_id=0)
                result["greedy"].append(out[0, len(ids):].tolist())
        if request.get("float64"):
            model = model.double()
            for i, ids in enumerate(inputs):
                logits = model(torch.tensor([ids])).logits[0].numpy().astype("<f8")
                logits.tofile(os.path.join(out_dir, f"logits_{i}.f64"))
    for text in request.get("texts", []):
        result["tokens"].append(tokenizer.encode(text, add_special_tokens=False))
    if "chat" in request:
        result["chat"] = tokenizer.apply_chat_template(request["chat"], tokenize=False, add_generation_prompt=True)
    write_json(os.path.join(out_dir, "result.json"), result)


if __name__ == "__main__":
    main(*sys.argv[1:4])
