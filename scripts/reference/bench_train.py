"""Training throughput of a model under PyTorch eager (transformers, CPU), for `rosetta bench train`.

usage: bench_train.py MODEL --batch 4 --seq 256 --steps 3 --warmup 1 --threads N [--lora-rank R]
MODEL: an HF directory or a .gguf file. One training step = forward, causal-LM loss, backward,
AdamW (torch.optim.AdamW, weight decay 0.1). With --lora-rank, the seven projections of every
layer get LoRA factors (A ~ N(0, 1/r), B = 0, scale alpha/r with alpha = 2r) and everything else
is frozen — the same as Rosetta's LoRA. Prints one JSON object with seconds per step and tokens/s.
"""
import argparse
import json
import os
import resource
import time

import torch
from loading import load_float32


class LoraLinear(torch.nn.Module):
    def __init__(self, base, rank):
        super().__init__()
        self.base = base
        self.a = torch.nn.Parameter(torch.randn(base.in_features, rank) / rank)
        self.b = torch.nn.Parameter(torch.zeros(rank, base.out_features))
        self.scale = 2.0

    def forward(self, x):
        return self.base(x) + (x @ self.a @ self.b) * self.scale


def add_lora(model, rank):
    for p in model.parameters():
        p.requires_grad_(False)
    names = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    for module in list(model.modules()):
        for name in names:
            child = getattr(module, name, None)
            if isinstance(child, torch.nn.Linear):
                setattr(module, name, LoraLinear(child, rank))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--lora-rank", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_float32(args.model, args.threads)
    if args.lora_rank:
        add_lora(model, args.lora_rank)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.1)
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.seq), generator=torch.Generator().manual_seed(0))

    def step():
        loss = model(ids, labels=ids, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = (time.perf_counter() - start) / args.steps
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "lora_rank": args.lora_rank,
                      "batch": args.batch, "seq": args.seq, "seconds_per_step": seconds,
                      "tokens_per_second": args.batch * args.seq / seconds,
                      "trainable_parameters": sum(p.numel() for p in params),
                      # Linux reports kilobytes.
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


if __name__ == "__main__":
    main()
