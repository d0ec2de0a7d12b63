"""Token ids of texts under a tokenizer.json, through HF `tokenizers` and transformers.

usage: tokenizer_ids.py MODEL_DIR IN_JSON OUT_JSON
  IN_JSON: {"texts": ["...", ...]}
  OUT_JSON: {"tokenizers": [[ids...]], "transformers": [[ids...]], "decoded": ["..."],
             "vocab_size": len(tokenizer), "config_vocab_size": config.vocab_size}
"""
import os
import sys

from tokenizers import Tokenizer
from transformers import AutoConfig, AutoTokenizer

from common import read_json, write_json


def main(model_dir, in_path, out_path):
    texts = read_json(in_path)["texts"]
    raw = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    fast = AutoTokenizer.from_pretrained(model_dir)
    config = AutoConfig.from_pretrained(model_dir)
    raw_ids = [e.ids for e in raw.encode_batch(texts, add_special_tokens=False)]
    write_json(out_path, {
        "tokenizers": raw_ids,
        "transformers": [fast.encode(t, add_special_tokens=False) for t in texts],
        "decoded": [raw.decode(ids, skip_special_tokens=False) for ids in raw_ids],
        "vocab_size": len(fast),
        "config_vocab_size": config.vocab_size,
    })


if __name__ == "__main__":
    main(*sys.argv[1:])
