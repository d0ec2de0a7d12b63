"""Forward throughput of a model under HF transformers (PyTorch eager), for `rosetta bench forward`
(CPU) and `scripts/gpu/run.sh` (`--device cuda`, `--dtype bfloat16`).

usage: bench_forward.py MODEL --batch 1,8 --seq 128 --iters 5 --warmup 1 --threads N [--device D --dtype T]
MODEL: an HF directory or a .gguf file. Prints one JSON object:
  {"torch": version, "threads": N, "results": [{"batch", "seq", "seconds", "tokens_per_second"}]}
"""
import argparse
import json
import torch
from loading import add_device_options, clock, describe, load


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    add_device_options(parser)
    args = parser.parse_args()
    model = load(args.model, args.threads, args.device, args.dtype)
    model.eval()
    vocab = model.config.vocab_size
    results = []
    generator = torch.Generator().manual_seed(0)
    for batch in [int(b) for b in args.batch.split(",")]:
        ids = torch.randint(0, vocab, (batch, args.seq), generator=generator).to(args.device)
        with torch.inference_mode():
            for _ in range(args.warmup):
                model(ids, use_cache=False)
            start = clock(args.device)
            for _ in range(args.iters):
                model(ids, use_cache=False)
            seconds = (clock(args.device) - start) / args.iters
        results.append({"batch": batch, "seq": args.seq, "seconds": seconds,
                        "tokens_per_second": batch * args.seq / seconds})
    print(json.dumps({**describe(args), "results": results}))


if __name__ == "__main__":
    main()
