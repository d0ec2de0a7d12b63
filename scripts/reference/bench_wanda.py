"""Calibration + mask time of the reference Wanda procedure (hwichan0720/pruning_for_multilinguality's
prune_mt.py structure: capture layer-0 inputs once, then per layer hook the linears, run the layer
on every sample one at a time, score |W|*sqrt(scaler_row), mask, zero, rerun the layer to feed the
next) under PyTorch on CPU, for the same calibration token ids Rosetta used.

usage: bench_wanda.py MODEL IDS_JSON --sparsity 0.5 --threads N
  MODEL: HF directory or .gguf file; IDS_JSON: {"samples": [[ids...], ...]} (rosetta prune
  --save-calibration). Prints {"seconds", "samples", "tokens", "sparsity", "torch", "threads"}.
"""
import argparse
import json
import os
import time

import torch
from loading import load_float32

LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("ids")
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    model = load_float32(args.model, args.threads)
    model.eval()
    with open(args.ids) as f:
        samples = json.load(f)["samples"]

    start = time.perf_counter()
    layers = model.model.layers
    inputs, kwargs = [], []

    class Stop(Exception):
        pass

    def catch(_, a, kw):
        inputs.append(a[0] if a else kw["hidden_states"])
        kwargs.append({k: v for k, v in kw.items() if k != "hidden_states"})
        raise Stop

    handle = layers[0].register_forward_pre_hook(catch, with_kwargs=True)
    with torch.no_grad():
        for ids in samples:
            try:
                model(torch.tensor([ids]), use_cache=False)
            except Stop:
                pass
    handle.remove()

    with torch.no_grad():
        for layer in layers:
            rows = {n: None for n in LINEARS}
            counts = {n: 0 for n in LINEARS}
            hooks = []
            for name in LINEARS:
                def hook(_, inp, out, name=name):
                    x = inp[0].reshape((-1, inp[0].shape[-1])).t().float()
                    if rows[name] is None:
                        rows[name] = torch.zeros(x.shape[0])
                    rows[name] *= counts[name] / (counts[name] + 1)
                    counts[name] += 1
                    rows[name] += torch.norm(x, p=2, dim=1) ** 2 / counts[name]
                hooks.append(layer.get_submodule(name).register_forward_hook(hook))
            for x, kw in zip(inputs, kwargs):
                layer(x, **kw)
            for h in hooks:
                h.remove()
            for name in LINEARS:
                W = layer.get_submodule(name).weight.data
                metric = torch.abs(W) * torch.sqrt(rows[name].reshape((1, -1)))
                order = torch.sort(metric, dim=-1, stable=True)[1]
                mask = torch.zeros_like(metric, dtype=torch.bool)
                mask.scatter_(1, order[:, :int(metric.shape[1] * args.sparsity)], True)
                W[mask] = 0
            following = []
            for x, kw in zip(inputs, kwargs):
                out = layer(x, **kw)
                following.append(out[0] if isinstance(out, tuple) else out)
            inputs = following
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "samples": len(samples), "tokens": sum(map(len, samples)),
                      "sparsity": args.sparsity, "torch": torch.__version__, "threads": args.threads}))


if __name__ == "__main__":
    main()
