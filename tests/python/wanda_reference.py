"""Kim et al.'s Wanda pruning as `hwichan0720/pruning_for_multilinguality` (src/prune_mt.py,
src/layerwrapper.py) computes it, reproduced from its documented formula for the parity test.

usage: wanda_reference.py MODEL_DIR IN_JSON OUT_DIR
  IN_JSON: {"samples": [[ids...], ...], "sparsity": 0.5, "nm": [n, m] or null,
            "code_samples": [[ids...]] (optional: the mt/code score)}
  OUT_DIR/result.json: {"linears": [name, ...], "shapes": {name: [out, in]}}
  OUT_DIR/<name>.mask.u8: 1 byte per weight (1 = kept), row-major [out, in]
  OUT_DIR/<name>.norm.f32: sqrt(scaler_row), the activation norm the layer was scored with

As in the reference: layers in order, each layer's statistics taken on the outputs of the
already-pruned layers before it, all linears of a layer
scored from one pass, scaler_row = running mean over samples of ||x_j||^2 over the sample's
tokens, W_metric = |W| * sqrt(scaler_row), unstructured: stable ascending sort per output row,
prune the first int(cols * sparsity); N:M: the N smallest of each group of M (torch.topk).
The mt/code score replaces scaler_row by s_mt * (s_mt / s_code).

One deliberate difference: the published code pads every calibration sample to `max_length` and
its layer wrapper never receives the attention mask, so pad tokens count in its scaler rows.
Rosetta excludes padding (its statistics do not depend on how prompts are batched); this script
runs one unpadded sample at a time so that both compute the same quantity. The Rust test compares
masks (>= 99.9% of entries equal: near-ties may flip when f32 sums run in another order) and
activation norms (1e-4 relative).
"""
import os
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM

from common import read_json, write_json

LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def scaler_rows(model, layer, samples):
    """Running-mean scaler rows of every linear of `layer` over `samples` (batch of 1 each)."""
    rows = {name: None for name in LINEARS}
    counts = {name: 0 for name in LINEARS}
    handles = []
    for name in LINEARS:
        module = layer.get_submodule(name)

        def hook(_, inp, out, name=name):
            x = inp[0].data
            if x.dim() == 2:
                x = x.unsqueeze(0)
            tmp = x.shape[0]
            x = x.reshape((-1, x.shape[-1])).t().float()
            if rows[name] is None:
                rows[name] = torch.zeros(x.shape[0])
            rows[name] *= counts[name] / (counts[name] + tmp)
            counts[name] += tmp
            rows[name] += torch.norm(x, p=2, dim=1) ** 2 / counts[name]

        handles.append(module.register_forward_hook(hook))
    with torch.no_grad():
        for ids in samples:
            model(torch.tensor([ids]))
    for h in handles:
        h.remove()
    return rows


def main(model_dir, in_path, out_dir):
    request = read_json(in_path)
    os.makedirs(out_dir, exist_ok=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    sparsity, nm = request["sparsity"], request.get("nm")
    code = request.get("code_samples")
    names, shapes = [], {}
    for i, layer in enumerate(model.model.layers):
        # The layer's inputs come from the pruned layers before it: a full forward gives exactly
        # that (the reference caches them instead; same values).
        rows = scaler_rows(model, layer, request["samples"])
        if code:
            code_rows = scaler_rows(model, layer, code)
            rows = {n: rows[n] * (rows[n] / code_rows[n]) for n in LINEARS}
        for name in LINEARS:
            module = layer.get_submodule(name)
            W = module.weight.data
            metric = torch.abs(W) * torch.sqrt(rows[name].reshape((1, -1)))
            mask = torch.zeros_like(metric) == 1
            if nm:
                n, m = nm
                for ii in range(metric.shape[1]):
                    if ii % m == 0:
                        tmp = metric[:, ii:(ii + m)].float()
                        mask.scatter_(1, ii + torch.topk(tmp, n, dim=1, largest=False)[1], True)
            else:
                order = torch.sort(metric, dim=-1, stable=True)[1]
                mask.scatter_(1, order[:, :int(metric.shape[1] * sparsity)], True)
            W[mask] = 0
            full = f"model.layers.{i}.{name}.weight"
            names.append(full)
            shapes[full] = list(W.shape)
            (~mask).numpy().astype(np.uint8).tofile(os.path.join(out_dir, full + ".mask.u8"))
            torch.sqrt(rows[name]).numpy().astype("<f4").tofile(os.path.join(out_dir, full + ".norm.f32"))
    write_json(os.path.join(out_dir, "result.json"), {"linears": names, "shapes": shapes})


if __name__ == "__main__":
    main(*sys.argv[1:])
