#!/usr/bin/env python3
"""The same GPT-2 style model in PyTorch (CPU, eager) for comparison with gpt-bench.

Identical architecture and step: learned positions, pre-LayerNorm blocks, causal attention
(F.scaled_dot_product_attention), GELU tanh, tied LM head, cross-entropy, global-norm clipping
at 1.0, AdamW (betas 0.9/0.95, weight decay 0.1 on matrices and embeddings).
Prints one JSON line like gpt-bench.
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, c, nh):
        super().__init__()
        self.nh = nh
        self.ln_1 = nn.LayerNorm(c)
        self.c_attn = nn.Linear(c, 3 * c)
        self.c_proj = nn.Linear(c, c)
        self.ln_2 = nn.LayerNorm(c)
        self.c_fc = nn.Linear(c, 4 * c)
        self.mlp_proj = nn.Linear(4 * c, c)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.nh, C // self.nh).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, L, nh, c, ctx, V):
        super().__init__()
        self.wte = nn.Embedding(V, c)
        self.wpe = nn.Embedding(ctx, c)
        self.h = nn.ModuleList([Block(c, nh) for _ in range(L)])
        self.ln_f = nn.LayerNorm(c)
        for n, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * L) if n.endswith("c_proj.weight") or n.endswith("mlp_proj.weight") else 0.02
                nn.init.normal_(p, std=std)
            elif n.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx, tgt):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for b in self.h:
            x = b(x)
        logits = self.ln_f(x) @ self.wte.weight.T
        return F.cross_entropy(logits.view(-1, logits.size(-1)), tgt.view(-1))


def main():
    ap = argparse.ArgumentParser()
    for k, v in dict(layers=6, heads=6, width=384, context=256, vocab=8192, batch=8, steps=5,
                     warmup=1, threads=2).items():
        ap.add_argument("--" + k, type=int, default=v)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    m = GPT(a.layers, a.heads, a.width, a.context, a.vocab)
    decay = [p for p in m.parameters() if p.dim() >= 2]
    other = [p for p in m.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": other, "weight_decay": 0.0}], lr=3e-4, betas=(0.9, 0.95))
    data = torch.randint(0, a.vocab, (a.batch, a.context + 1))
    x, y = data[:, :-1].contiguous(), data[:, 1:].contiguous()
    times = []
    for s in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        loss = m(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        dt = time.perf_counter() - t0
        if s >= a.warmup:
            times.append(dt)
    med = statistics.median(times)
    n = a.batch * a.context
    print(json.dumps({"impl": "torch", "version": torch.__version__, "threads": torch.get_num_threads(),
                      "batch": a.batch, "time": a.context,
                      "params": sum(p.numel() for p in m.parameters()), "step_s": med,
                      "tokens_per_s": n / med, "loss": loss.item(), "steps": times}))


if __name__ == "__main__":
    main()
