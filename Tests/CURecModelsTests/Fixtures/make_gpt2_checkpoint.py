#!/usr/bin/env python3
"""Writes a tiny GPT-2 checkpoint in Hugging Face format and its expected logits.

Independent of the Swift code: numpy for the GPT-2 forward pass (float64), the `safetensors`
package for the file. The checkpoint uses the `transformer.` prefix, stores the `attn.bias`
causal-mask buffers and a tied `lm_head.weight` as GPT2LMHeadModel does, and one tensor in F16,
so the loader's prefix handling, buffer skipping and dtype conversion are exercised.
Output: gpt2_tiny/model.safetensors, gpt2_tiny/config.json, gpt2_tiny_expected.json.
Run: python3 make_gpt2_checkpoint.py
"""
import json
import os
import numpy as np
from safetensors.numpy import save_file

L, NH, C, CTX, V = 2, 4, 32, 16, 50
rng = np.random.default_rng(7)


def ln(x, g, b):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * g + b


def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def forward(w, idx):
    T = len(idx)
    hs = C // NH
    x = w["wte.weight"][idx] + w["wpe.weight"][:T]
    mask = np.tril(np.ones((T, T), dtype=bool))
    for i in range(L):
        p = f"h.{i}."
        h = ln(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"])
        qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        q, k, v = (a.reshape(T, NH, hs).transpose(1, 0, 2) for a in np.split(qkv, 3, -1))
        s = np.where(mask, q @ k.transpose(0, 2, 1) / np.sqrt(hs), -np.inf)
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        y = (a @ v).transpose(1, 0, 2).reshape(T, C)
        x = x + y @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        h = ln(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"])
        x = x + gelu(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"]) @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    x = ln(x, w["ln_f.weight"], w["ln_f.bias"])
    return x @ w["wte.weight"].T


def main():
    shapes = {"wte.weight": (V, C), "wpe.weight": (CTX, C), "ln_f.weight": (C,), "ln_f.bias": (C,)}
    for i in range(L):
        p = f"h.{i}."
        shapes.update({p + "ln_1.weight": (C,), p + "ln_1.bias": (C,),
                       p + "attn.c_attn.weight": (C, 3 * C), p + "attn.c_attn.bias": (3 * C,),
                       p + "attn.c_proj.weight": (C, C), p + "attn.c_proj.bias": (C,),
                       p + "ln_2.weight": (C,), p + "ln_2.bias": (C,),
                       p + "mlp.c_fc.weight": (C, 4 * C), p + "mlp.c_fc.bias": (4 * C,),
                       p + "mlp.c_proj.weight": (4 * C, C), p + "mlp.c_proj.bias": (C,)})
    w = {}
    for n, s in shapes.items():
        if n.endswith("ln_1.weight") or n.endswith("ln_2.weight") or n == "ln_f.weight":
            a = 1 + 0.1 * rng.standard_normal(s)
        else:
            a = 0.1 * rng.standard_normal(s)
        w[n] = a.astype(np.float32)
    # wpe is stored as F16: round the reference values the same way.
    w["wpe.weight"] = w["wpe.weight"].astype(np.float16).astype(np.float32)
    tensors = {}
    for n, a in w.items():
        tensors["transformer." + n] = a.astype(np.float16) if n == "wpe.weight" else a
    for i in range(L):
        tensors[f"transformer.h.{i}.attn.bias"] = np.tril(np.ones((1, 1, CTX, CTX), dtype=np.float32))
        tensors[f"transformer.h.{i}.attn.masked_bias"] = np.array(-1e4, dtype=np.float32)
    tensors["lm_head.weight"] = w["wte.weight"].copy()
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(here, "gpt2_tiny")
    os.makedirs(out, exist_ok=True)
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    cfg = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_layer": L, "n_head": NH,
           "n_embd": C, "n_positions": CTX, "n_ctx": CTX, "vocab_size": V,
           "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new"}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    tokens = rng.integers(0, V, size=CTX).tolist()
    w64 = {n: a.astype(np.float64) for n, a in w.items()}
    logits = forward(w64, np.array(tokens))
    with open(os.path.join(here, "gpt2_tiny_expected.json"), "w") as f:
        json.dump({"tokens": tokens, "logits": logits.reshape(-1).tolist()}, f)


if __name__ == "__main__":
    main()
