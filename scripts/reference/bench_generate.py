"""Prefill and greedy decode throughput under HF transformers (PyTorch eager, KV cache), for
`rosetta bench generate` (CPU, f32) and `scripts/gpu/run.sh` (`--device cuda`, `--dtype bfloat16`).

usage: bench_generate.py MODEL --batch 1,8 --prompt-tokens 128 --new-tokens 64 --repeats 3 --threads N [--device D --dtype T]
MODEL: an HF directory or a .gguf file (dequantised to f32). Prints one JSON object:
  {"torch", "threads", "results": [{"batch", "prefill_tokens_per_second", "decode_tokens_per_second"}]}
Best of `repeats`, as the Rosetta side reports.
"""
import argparse
import json
import torch
from loading import add_device_options, clock, describe, load


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    add_device_options(parser)
    args = parser.parse_args()
    model = load(args.model, args.threads, args.device, args.dtype)
    model.eval()
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    results = []
    for batch in [int(b) for b in args.batch.split(",")]:
        ids = torch.randint(0, vocab, (batch, args.prompt_tokens), generator=generator).to(args.device)
        best_prefill, best_decode = 0.0, 0.0
        with torch.inference_mode():
            for _ in range(args.repeats):
                start = clock(args.device)
                out = model(ids, use_cache=True)
                prefill = clock(args.device) - start
                past = out.past_key_values
                token = out.logits[:, -1:].argmax(-1)
                start = clock(args.device)
                for _ in range(args.new_tokens):
                    out = model(token, past_key_values=past, use_cache=True)
                    past = out.past_key_values
                    token = out.logits[:, -1:].argmax(-1)
                decode = clock(args.device) - start
                best_prefill = max(best_prefill, batch * args.prompt_tokens / prefill)
                best_decode = max(best_decode, batch * args.new_tokens / decode)
        results.append({"batch": batch, "prefill_tokens_per_second": best_prefill, "decode_tokens_per_second": best_decode})
    print(json.dumps({**describe(args), "results": results}))


if __name__ == "__main__":
    main()
