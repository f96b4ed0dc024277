#!/usr/bin/env python3
"""Writes llama_reference.json: logits, losses and greedy continuations of
SmolLM2-135M-Instruct (var/models/SmolLM2-135M-Instruct, the Q4_1 GGUF of scripts/fetch-lm)
computed by Hugging Face transformers (PyTorch, CPU), which loads the same file dequantized.

The reference runs in float64 (the weights are the float32 dequantized values, so float64
only removes the rounding of the computation). The same model in float32 is run as well and
its largest deviation from float64 is recorded: it is the size of float32 rounding for this
model and these prompts, from which the Swift test derives its tolerance.

Contents, per prompt (token ids from the file's own tokenizer):
  * logits at every position for the fixed vocabulary ids `vocab_ids`;
  * per position: arg-max id, max logit, top-2 margin and logsumexp over the vocabulary;
  * the mean next-token cross-entropy of the prompt;
  * for some prompts, the 64-token greedy continuation and its smallest top-2 margin.
Also a few rows of layer 0's q_proj and k_proj as transformers holds them (Hugging Face row
order), to test the GGUF/Hugging Face row mapping.

The Swift test LlamaReferenceTests compares against it. Rerun from this folder:
`python3 make_llama_reference.py`.
"""
import json
import os
import random

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
MODEL_DIR = os.path.join(ROOT, "var", "models", "SmolLM2-135M-Instruct")
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = os.path.join(HERE, "llama_reference.json")

PROMPTS = [
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "The quick brown fox jumps over the lazy dog. The dog",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Recommender systems suggest items to users from their past interactions. "
    "Collaborative filtering, for example, compares users who",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "Recommend a movie for a rainy evening and say why.<|im_end|>\n<|im_start|>assistant\n",
]
GREEDY_PROMPTS = [0, 2, 4]
GREEDY_TOKENS = 64
VOCAB_IDS = sorted(set(range(8)) | set(random.Random(0).sample(range(8, 49152), 56)))
QK_ROWS = [0, 1, 2, 31, 32, 33, 63, 64, 65, 190, 191]
QK_COLUMNS = 8


def logits_of(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].double()


def greedy(model, ids, steps):
    """Greedy continuation with the model's key/value cache; also each step's top-2 margin."""
    out, margins = [], []
    with torch.no_grad():
        res = model(torch.tensor([ids]), use_cache=True)
        for i in range(steps):
            last = res.logits[0, -1].double()
            top = torch.topk(last, 2)
            out.append(int(top.indices[0]))
            margins.append(float(top.values[0] - top.values[1]))
            if i + 1 < steps:
                res = model(torch.tensor([[out[-1]]]), past_key_values=res.past_key_values, use_cache=True)
    return out, margins


def main():
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(MODEL_DIR, gguf_file=MODEL_FILE)
    m32 = AutoModelForCausalLM.from_pretrained(
        MODEL_DIR, gguf_file=MODEL_FILE, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    cfg = m32.config
    rope = getattr(cfg, "rope_parameters", None) or {"rope_theta": getattr(cfg, "rope_theta", None)}
    assert rope.get("rope_theta") == 100000.0 and rope.get("rope_type", "default") == "default", cfg
    assert abs(cfg.rms_norm_eps - 1e-5) < 1e-9, cfg
    assert cfg.tie_word_embeddings and cfg.num_key_value_heads == 3 and cfg.num_attention_heads == 9
    m64 = AutoModelForCausalLM.from_pretrained(
        MODEL_DIR, gguf_file=MODEL_FILE, dtype=torch.float32, attn_implementation="eager"
    ).eval().double()

    prompts, worst_all, worst_ids, worst_ce = [], 0.0, 0.0, 0.0
    for text in PROMPTS:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert 10 <= len(ids) <= 40, (text, len(ids))
        l64, l32 = logits_of(m64, ids), logits_of(m32, ids)
        diff = (l64 - l32).abs()
        worst_all = max(worst_all, float(diff.max()))
        worst_ids = max(worst_ids, float(diff[:, VOCAB_IDS].max()))
        top = torch.topk(l64, 2, dim=-1)
        lse = torch.logsumexp(l64, dim=-1)
        targets = torch.tensor(ids[1:])
        ce64 = torch.nn.functional.cross_entropy(l64[:-1], targets)
        ce32 = torch.nn.functional.cross_entropy(l32[:-1], targets)
        worst_ce = max(worst_ce, float((ce64 - ce32).abs()))
        prompts.append({
            "text": text,
            "ids": ids,
            "logits": [[round(float(v), 5) for v in row[VOCAB_IDS]] for row in l64],
            "argmax": [int(i) for i in top.indices[:, 0]],
            "max_logit": [round(float(v), 5) for v in top.values[:, 0]],
            "top2_margin": [round(float(v), 5) for v in top.values[:, 0] - top.values[:, 1]],
            "logsumexp": [round(float(v), 5) for v in lse],
            "mean_cross_entropy": round(float(ce64), 6),
        })

    continuations = []
    for p in GREEDY_PROMPTS:
        ids = prompts[p]["ids"]
        out64, margins = greedy(m64, ids, GREEDY_TOKENS)
        out32, _ = greedy(m32, ids, GREEDY_TOKENS)
        continuations.append({
            "prompt": p,
            "tokens": out64,
            "float32_agrees": out32 == out64,
            "min_top2_margin": round(min(margins), 5),
            "text": tok.decode(out64),
        })

    attn = m32.model.layers[0].self_attn
    qk = {
        "head_size": cfg.hidden_size // cfg.num_attention_heads,
        "rows": QK_ROWS,
        "columns": QK_COLUMNS,
        "q_proj": [[float(v) for v in attn.q_proj.weight.detach()[r, :QK_COLUMNS]] for r in QK_ROWS],
        "k_proj": [[float(v) for v in attn.k_proj.weight.detach()[r, :QK_COLUMNS]] for r in QK_ROWS],
    }

    result = {
        "model": MODEL_FILE,
        "torch": torch.__version__,
        "vocab_ids": VOCAB_IDS,
        "float32_vs_float64_max_abs_logit": worst_all,
        "float32_vs_float64_max_abs_logit_vocab_ids": worst_ids,
        "float32_vs_float64_max_abs_cross_entropy": worst_ce,
        "prompts": prompts,
        "greedy": continuations,
        "qk_rows": qk,
    }
    with open(OUT, "w") as f:
        json.dump(result, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT}: {os.path.getsize(OUT)} bytes; f32 vs f64 max |logit| {worst_all:.3g}, "
          f"cross-entropy {worst_ce:.3g}; greedy min margins "
          f"{[c['min_top2_margin'] for c in continuations]}, f32 agrees "
          f"{[c['float32_agrees'] for c in continuations]}; "
          f"prompt lengths {[len(p['ids']) for p in prompts]}")


if __name__ == "__main__":
    main()
