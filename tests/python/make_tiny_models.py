"""Creates tiny random HF checkpoints (llama, mistral, qwen2 variants) and their reference outputs.

usage: make_tiny_models.py OUT_DIR

For each variant OUT_DIR/<name>/ holds an HF model directory written by transformers, and
OUT_DIR/<name>/reference.json holds, computed by transformers in float32:
  - "inputs": token id sequences; "logits": their full logits (nested lists)
  - "greedy": 20 greedily generated tokens after inputs[0]
  - "padded": a left-padded batch with attention mask and the logits of its last position
  - "hidden_states": output_hidden_states of inputs[0] (embeddings + every layer output)
"""
import os
import sys

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
from transformers import (AutoModelForCausalLM, LlamaConfig, MistralConfig, Qwen2Config,
                          PreTrainedTokenizerFast)

from common import write_json

TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "A gyors barna róka átugrik a lusta kutyán.",
    "Mbweha mwepesi wa kahawia anaruka juu ya mbwa mvivu.",
    "สุนัขจิ้งจอกสีน้ำตาลกระโดดข้ามสุนัขขี้เกียจ",
    "敏捷的棕色狐狸跳过了懒狗。",
] * 20


def tiny_tokenizer(vocab_size):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(TEXT, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token=None)


def variants():
    common = dict(vocab_size=320, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                  num_attention_heads=4, max_position_embeddings=256, rms_norm_eps=1e-5,
                  bos_token_id=1, eos_token_id=2)
    yield "llama_gqa_tied", LlamaConfig(**common, num_key_value_heads=2, tie_word_embeddings=True,
                                        rope_theta=10000.0)
    yield "llama_bias_llama3_rope", LlamaConfig(
        **common, num_key_value_heads=4, tie_word_embeddings=False, attention_bias=True, mlp_bias=True,
        rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 32})
    yield "llama_linear_rope_mqa", LlamaConfig(**common, num_key_value_heads=1, tie_word_embeddings=False,
                                               rope_scaling={"rope_type": "linear", "factor": 2.0})
    yield "mistral_sliding", MistralConfig(**common, num_key_value_heads=2, tie_word_embeddings=False,
                                           sliding_window=8, head_dim=16)
    yield "qwen2_bias_gqa", Qwen2Config(**common, num_key_value_heads=2, tie_word_embeddings=True,
                                        use_sliding_window=False)


def main(out_dir):
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer(300)
    for index, (name, config) in enumerate(variants()):
        torch.manual_seed(index)
        model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").float().eval()
        # Random init draws norm weights as ones and biases as zeros; perturb them so a missed
        # norm or bias would show.
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if "norm" in pname or pname.endswith(".bias"):
                    p.add_(torch.randn_like(p) * 0.1)
                else:
                    p.mul_(4.0)
        path = os.path.join(out_dir, name)
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)

        inputs = [tokenizer.encode(TEXT[1])[:24], tokenizer.encode(TEXT[3])[:17]]
        reference = {"inputs": inputs, "logits": []}
        with torch.no_grad():
            for ids in inputs:
                out = model(torch.tensor([ids]), output_hidden_states=True)
                reference["logits"].append(out.logits[0].tolist())
            hidden = model(torch.tensor([inputs[0]]), output_hidden_states=True).hidden_states
            # The last entry has the final norm applied; Rosetta's sites 0..L-1 are the others.
            reference["hidden_states"] = [h[0].tolist() for h in hidden[:-1]]
            greedy = model.generate(torch.tensor([inputs[0]]), max_new_tokens=20, do_sample=False,
                                    min_new_tokens=20, pad_token_id=0)
            reference["greedy"] = greedy[0, len(inputs[0]):].tolist()

            short, long = inputs[1][:9], inputs[0][:20]
            ids = torch.tensor([[0] * (len(long) - len(short)) + short, long])
            mask = torch.tensor([[0] * (len(long) - len(short)) + [1] * len(short), [1] * len(long)])
            out = model(ids, attention_mask=mask)
            reference["padded"] = {"sequences": [short, long], "last_logits": out.logits[:, -1].tolist()}
        write_json(os.path.join(path, "reference.json"), reference)
        print(name, "ok", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
