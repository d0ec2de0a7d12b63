"""Training throughput of a model under PyTorch eager (transformers), for `rosetta bench train` (CPU)
and `scripts/gpu/run.sh` (`--device cuda`; `--dtype bfloat16` trains under autocast with float32
master weights and optimizer state, as mixed precision is meant).

usage: bench_train.py MODEL --batch 4 --seq 256 --steps 3 --warmup 1 --threads N [--lora-rank R] [--device D --dtype T]
MODEL: an HF directory or a .gguf file. One training step = forward, causal-LM loss, backward,
AdamW (torch.optim.AdamW, weight decay 0.1). With --lora-rank, the seven projections of every
layer get LoRA factors (A ~ N(0, 1/r), B = 0, scale alpha/r with alpha = 2r) and everything else
is frozen — the same as Rosetta's LoRA. Prints one JSON object with seconds per step and tokens/s.
"""
import argparse
import json
import contextlib
import resource

import torch
from loading import DTYPES, add_device_options, clock, describe, load


class LoraLinear(torch.nn.Module):
    def __init__(self, base, rank):
        super().__init__()
        self.base = base
        device = base.weight.device
        self.a = torch.nn.Parameter(torch.randn(base.in_features, rank, device=device) / rank)
        self.b = torch.nn.Parameter(torch.zeros(rank, base.out_features, device=device))
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
    parser.add_argument("--lora-rank", type=int, default=0)
    # 1: transformers' activation checkpointing by decoder layer (what Rosetta's
    # `--activation-checkpointing` does), non-reentrant.
    parser.add_argument("--gradient-checkpointing", type=int, default=0)
    add_device_options(parser)
    args = parser.parse_args()
    torch.manual_seed(0)
    # Master weights stay float32; a lower --dtype is the autocast compute precision.
    model = load(args.model, args.threads, args.device)
    autocast = (torch.autocast(device_type=args.device.split(":")[0], dtype=DTYPES[args.dtype])
                if args.dtype != "float32" else contextlib.nullcontext())
    if args.lora_rank:
        add_lora(model, args.lora_rank)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.1)
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.seq), generator=torch.Generator().manual_seed(0)).to(args.device)

    def step():
        with autocast:
            loss = model(ids, labels=ids, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    for _ in range(args.warmup):
        step()
    start = clock(args.device)
    for _ in range(args.steps):
        step()
    seconds = (clock(args.device) - start) / args.steps
    # Allocated: what the tensors needed; reserved: what the caching allocator took from the device
    # (the CUDA context itself, about 0.5 GB, is in neither).
    peak = ({"peak_gpu_bytes": torch.cuda.max_memory_allocated(),
             "peak_gpu_reserved_bytes": torch.cuda.max_memory_reserved()}
            if args.device.startswith("cuda") else {})
    print(json.dumps({**describe(args), **peak, "lora_rank": args.lora_rank,
                      "gradient_checkpointing": bool(args.gradient_checkpointing),
                      "batch": args.batch, "seq": args.seq, "seconds_per_step": seconds,
                      "tokens_per_second": args.batch * args.seq / seconds,
                      "trainable_parameters": sum(p.numel() for p in params),
                      # Linux reports kilobytes.
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


if __name__ == "__main__":
    main()
