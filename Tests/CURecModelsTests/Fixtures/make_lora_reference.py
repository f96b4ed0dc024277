#!/usr/bin/env python3
"""Writes lora_reference.json: logits of SmolLM2-135M-Instruct (var/models/SmolLM2-135M-Instruct,
the Q4_1 GGUF of scripts/fetch-lm) with and without a LoRA adapter, computed by Hugging Face
transformers + peft (PyTorch, CPU) from the adapter directory our Swift code wrote.

The adapter is the deterministic one of LoRAReferenceTests.swift (LoRAReferenceAdapter: rank 4,
alpha 8, all seven projections, non-zero B from fixed seeds). To regenerate, from the repository
root:

    LORA_REFERENCE_ADAPTER_DIR=/tmp/lora-ref swift test --filter LoRAReferenceTests
    python3 Tests/CURecModelsTests/Fixtures/make_lora_reference.py /tmp/lora-ref

(the test writes the adapter there and keeps it; it fails its fixture check until the new
fixture is written, which is expected on the first run).

transformers loads the GGUF file dequantized to float32 and reorders the q/k rows to Hugging
Face order; peft.PeftModel.from_pretrained reads adapter_model.safetensors + adapter_config.json.
The reference runs in float64 (the weights are the float32 values, so float64 only removes the
rounding of the computation); the same model in float32 is run too, and its largest deviation
from float64 is recorded: the size of float32 rounding, from which the Swift test derives its
tolerance. Per prompt: token ids, adapted and base logits at every position for the fixed
vocabulary ids `vocab_ids`, and per position the adapted arg-max, top-2 margin and logsumexp.
"""
import json
import os
import random
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
MODEL_DIR = os.path.join(ROOT, "var", "models", "SmolLM2-135M-Instruct")
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = os.path.join(HERE, "lora_reference.json")

PROMPTS = [
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "Recommender systems suggest items to users from their past interactions.",
]
VOCAB_IDS = sorted(set(range(4)) | set(random.Random(1).sample(range(4, 49152), 60)))


def fnv1a64(path):
    h = 0xCBF29CE484222325
    with open(path, "rb") as f:
        for byte in f.read():
            h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return format(h, "x")


def logits_of(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_lora_reference.py ADAPTER_DIR")
    adapter_dir = sys.argv[1]
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(MODEL_DIR, gguf_file=MODEL_FILE)

    def load():
        base = AutoModelForCausalLM.from_pretrained(
            MODEL_DIR, gguf_file=MODEL_FILE, dtype=torch.float32, attn_implementation="eager")
        return PeftModel.from_pretrained(base, adapter_dir).eval()

    m32 = load()
    m64 = load().double()
    prompts, worst32, worst_effect = [], 0.0, 0.0
    for text in PROMPTS:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        a64, a32 = logits_of(m64, ids).double(), logits_of(m32, ids).double()
        with m64.disable_adapter():
            b64 = logits_of(m64, ids).double()
        with m32.disable_adapter():
            b32 = logits_of(m32, ids).double()
        worst32 = max(worst32, float((a64 - a32).abs().max()), float((b64 - b32).abs().max()))
        worst_effect = max(worst_effect, float((a64 - b64).abs().max()))
        top = torch.topk(a64, 2, dim=-1)
        prompts.append({
            "text": text,
            "ids": ids,
            "adapted": [[round(float(v), 6) for v in row[VOCAB_IDS]] for row in a64],
            "base": [[round(float(v), 6) for v in row[VOCAB_IDS]] for row in b64],
            "argmax": [int(i) for i in top.indices[:, 0]],
            "top2_margin": [round(float(v), 6) for v in top.values[:, 0] - top.values[:, 1]],
            "logsumexp": [round(float(v), 6) for v in torch.logsumexp(a64, dim=-1)],
        })
    out = {
        "adapter_fnv1a64": fnv1a64(os.path.join(adapter_dir, "adapter_model.safetensors")),
        "vocab_ids": VOCAB_IDS,
        "float32_vs_float64_max_abs_logit": worst32,
        "max_abs_adapter_effect": worst_effect,
        "prompts": prompts,
    }
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT}: float32 deviation {worst32:.2e}, adapter effect up to {worst_effect:.2f}")


if __name__ == "__main__":
    main()
