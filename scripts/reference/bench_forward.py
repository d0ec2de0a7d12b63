"""Forward throughput of a model under HF transformers (PyTorch eager, CPU), for `rosetta bench forward`.

usage: bench_forward.py MODEL --batch 1,8 --seq 128 --iters 5 --warmup 1 --threads N
MODEL: an HF directory or a .gguf file. Prints one JSON object:
  {"torch": version, "threads": N, "results": [{"batch", "seq", "seconds", "tokens_per_second"}]}
"""
import argparse
import json
import os
import time

import torch
from loading import load_float32


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    model = load_float32(args.model, args.threads)
    model.eval()
    vocab = model.config.vocab_size
    results = []
    generator = torch.Generator().manual_seed(0)
    for batch in [int(b) for b in args.batch.split(",")]:
        ids = torch.randint(0, vocab, (batch, args.seq), generator=generator)
        with torch.inference_mode():
            for _ in range(args.warmup):
                model(ids, use_cache=False)
            start = time.perf_counter()
            for _ in range(args.iters):
                model(ids, use_cache=False)
            seconds = (time.perf_counter() - start) / args.iters
        results.append({"batch": batch, "seq": args.seq, "seconds": seconds,
                        "tokens_per_second": batch * args.seq / seconds})
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "results": results}))


if __name__ == "__main__":
    main()
