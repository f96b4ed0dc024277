#!/usr/bin/env python3
"""Independent numpy reference for the GPT training step (float64, numpy only).

Writes gpt_reference.json (config, hyper-parameters, tokens, tensor index) and
gpt_reference.bin (little-endian float32 tensors) beside this script:
  initial weights (Hugging Face GPT-2 names, Conv1D layout [in, out]),
  step-1 logits and loss, step-1 gradients, weights after step 1 and step 2 of AdamW
  (global-norm clipping, decoupled weight decay on matrices and embeddings only),
  and the step-2 loss.
Run: python3 make_gpt_reference.py
"""
import json
import os
import numpy as np

L, NH, C, T, V, B = 2, 2, 16, 8, 32, 2
LR, BETA1, BETA2, EPS, WD = 1e-2, 0.9, 0.95, 1e-8, 0.1
LN_EPS = 1e-5
DECAY = ("wte.weight", "wpe.weight", "c_attn.weight", "attn.c_proj.weight", "c_fc.weight",
         "mlp.c_proj.weight")

rng = np.random.default_rng(1234)


def names():
    out = [("wte.weight", (V, C)), ("wpe.weight", (T, C))]
    for i in range(L):
        p = f"h.{i}."
        out += [(p + "ln_1.weight", (C,)), (p + "ln_1.bias", (C,)),
                (p + "attn.c_attn.weight", (C, 3 * C)), (p + "attn.c_attn.bias", (3 * C,)),
                (p + "attn.c_proj.weight", (C, C)), (p + "attn.c_proj.bias", (C,)),
                (p + "ln_2.weight", (C,)), (p + "ln_2.bias", (C,)),
                (p + "mlp.c_fc.weight", (C, 4 * C)), (p + "mlp.c_fc.bias", (4 * C,)),
                (p + "mlp.c_proj.weight", (4 * C, C)), (p + "mlp.c_proj.bias", (C,))]
    return out + [("ln_f.weight", (C,)), ("ln_f.bias", (C,))]


def init():
    w = {}
    for n, shape in names():
        if n.endswith("ln_1.weight") or n.endswith("ln_2.weight") or n == "ln_f.weight":
            w[n] = 1 + 0.1 * rng.standard_normal(shape)
        elif n.endswith(".bias"):
            w[n] = 0.02 * rng.standard_normal(shape)
        else:
            w[n] = 0.08 * rng.standard_normal(shape)
        w[n] = w[n].astype(np.float32).astype(np.float64)
    return w


def ln_fwd(x, g, b):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    rstd = 1 / np.sqrt(var + LN_EPS)
    xhat = (x - mu) * rstd
    return xhat * g + b, (xhat, rstd, g)


def ln_bwd(dy, cache):
    xhat, rstd, g = cache
    dg = (dy * xhat).reshape(-1, xhat.shape[-1]).sum(0)
    db = dy.reshape(-1, xhat.shape[-1]).sum(0)
    dxhat = dy * g
    dx = rstd * (dxhat - dxhat.mean(-1, keepdims=True) - xhat * (dxhat * xhat).mean(-1, keepdims=True))
    return dx, dg, db


K = np.sqrt(2 / np.pi)


def gelu_fwd(x):
    return 0.5 * x * (1 + np.tanh(K * (x + 0.044715 * x ** 3)))


def gelu_bwd(x, dy):
    u = K * (x + 0.044715 * x ** 3)
    th = np.tanh(u)
    return dy * (0.5 * (1 + th) + 0.5 * x * (1 - th ** 2) * K * (1 + 3 * 0.044715 * x ** 2))


def attn_fwd(qkv):
    hs = C // NH
    q, k, v = np.split(qkv, 3, axis=-1)
    sh = lambda t: t.reshape(B, T, NH, hs).transpose(0, 2, 1, 3)
    q, k, v = sh(q), sh(k), sh(v)
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hs)
    mask = np.tril(np.ones((T, T), dtype=bool))
    s = np.where(mask, s, -np.inf)
    s = s - s.max(-1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(-1, keepdims=True)
    y = p @ v
    return y.transpose(0, 2, 1, 3).reshape(B, T, C), (q, k, v, p)


def attn_bwd(dy, cache):
    q, k, v, p = cache
    hs = C // NH
    dy = dy.reshape(B, T, NH, hs).transpose(0, 2, 1, 3)
    dp = dy @ v.transpose(0, 1, 3, 2)
    dv = p.transpose(0, 1, 3, 2) @ dy
    ds = p * (dp - (dp * p).sum(-1, keepdims=True)) / np.sqrt(hs)
    dq = ds @ k
    dk = ds.transpose(0, 1, 3, 2) @ q
    un = lambda t: t.transpose(0, 2, 1, 3).reshape(B, T, C)
    return np.concatenate([un(dq), un(dk), un(dv)], axis=-1)


def forward_backward(w, idx, tgt):
    g = {n: np.zeros_like(a) for n, a in w.items()}
    x = w["wte.weight"][idx] + w["wpe.weight"][np.arange(T)][None]
    caches = []
    for i in range(L):
        p = f"h.{i}."
        h1, c1 = ln_fwd(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"])
        qkv = h1 @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        y, ca = attn_fwd(qkv)
        x2 = x + y @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        h2, c2 = ln_fwd(x2, w[p + "ln_2.weight"], w[p + "ln_2.bias"])
        f = h2 @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"]
        fg = gelu_fwd(f)
        x3 = x2 + fg @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
        caches.append((h1, c1, y, ca, h2, c2, f, fg))
        x = x3
    hf, cf = ln_fwd(x, w["ln_f.weight"], w["ln_f.bias"])
    logits = hf @ w["wte.weight"].T
    m = logits.max(-1, keepdims=True)
    lse = np.log(np.exp(logits - m).sum(-1, keepdims=True)) + m
    logp = logits - lse
    valid = tgt >= 0
    nvalid = valid.sum()
    safe = np.where(valid, tgt, 0)
    nll = -np.take_along_axis(logp, safe[..., None], -1)[..., 0]
    loss = (nll * valid).sum() / nvalid
    # backward
    dlogits = np.exp(logp)
    dlogits[np.arange(B)[:, None], np.arange(T)[None], safe] -= 1
    dlogits *= (valid / nvalid)[..., None]
    g["wte.weight"] += dlogits.reshape(-1, V).T @ hf.reshape(-1, C)
    dhf = dlogits @ w["wte.weight"]
    dx, g["ln_f.weight"], g["ln_f.bias"] = ln_bwd(dhf, cf)
    for i in reversed(range(L)):
        p = f"h.{i}."
        h1, c1, y, ca, h2, c2, f, fg = caches[i]
        g[p + "mlp.c_proj.weight"] = fg.reshape(-1, 4 * C).T @ dx.reshape(-1, C)
        g[p + "mlp.c_proj.bias"] = dx.reshape(-1, C).sum(0)
        dfg = dx @ w[p + "mlp.c_proj.weight"].T
        df = gelu_bwd(f, dfg)
        g[p + "mlp.c_fc.weight"] = h2.reshape(-1, C).T @ df.reshape(-1, 4 * C)
        g[p + "mlp.c_fc.bias"] = df.reshape(-1, 4 * C).sum(0)
        dh2 = df @ w[p + "mlp.c_fc.weight"].T
        d, g[p + "ln_2.weight"], g[p + "ln_2.bias"] = ln_bwd(dh2, c2)
        dx = dx + d
        g[p + "attn.c_proj.weight"] = y.reshape(-1, C).T @ dx.reshape(-1, C)
        g[p + "attn.c_proj.bias"] = dx.reshape(-1, C).sum(0)
        dy = dx @ w[p + "attn.c_proj.weight"].T
        dqkv = attn_bwd(dy, ca)
        g[p + "attn.c_attn.weight"] = h1.reshape(-1, C).T @ dqkv.reshape(-1, 3 * C)
        g[p + "attn.c_attn.bias"] = dqkv.reshape(-1, 3 * C).sum(0)
        dh1 = dqkv @ w[p + "attn.c_attn.weight"].T
        d, g[p + "ln_1.weight"], g[p + "ln_1.bias"] = ln_bwd(dh1, c1)
        dx = dx + d
    np.add.at(g["wte.weight"], idx.reshape(-1), dx.reshape(-1, C))
    g["wpe.weight"] += dx.sum(0)
    return loss, logits, g


def adamw(w, g, m, v, t, max_norm):
    norm = np.sqrt(sum((a ** 2).sum() for a in g.values()))
    scale = min(1.0, max_norm / norm)
    for n in w:
        gi = g[n] * scale
        m[n] = BETA1 * m[n] + (1 - BETA1) * gi
        v[n] = BETA2 * v[n] + (1 - BETA2) * gi ** 2
        mh = m[n] / (1 - BETA1 ** t)
        vh = v[n] / (1 - BETA2 ** t)
        wd = WD if n.endswith(DECAY) else 0.0
        w[n] = w[n] - LR * (mh / (np.sqrt(vh) + EPS) + wd * w[n])
    return norm


def main():
    w = init()
    idx = rng.integers(0, V, size=(B, T))
    tgt = rng.integers(0, V, size=(B, T))
    tgt[1, 2] = -1  # an ignored position
    out = []  # (name, array)
    for n, _ in names():
        out.append(("init/" + n, w[n]))
    loss1, logits1, g1 = forward_backward(w, idx, tgt)
    out.append(("step1/logits", logits1))
    for n, _ in names():
        out.append(("step1/grad/" + n, g1[n]))
    norm1 = np.sqrt(sum((a ** 2).sum() for a in g1.values()))
    max_norm = 0.5 * norm1  # make clipping active
    m = {n: np.zeros_like(a) for n, a in w.items()}
    v = {n: np.zeros_like(a) for n, a in w.items()}
    adamw(w, g1, m, v, 1, max_norm)
    for n, _ in names():
        out.append(("step1/weights/" + n, w[n]))
    loss2, _, g2 = forward_backward(w, idx, tgt)
    norm2 = adamw(w, g2, m, v, 2, max_norm)
    for n, _ in names():
        out.append(("step2/weights/" + n, w[n]))
    here = os.path.dirname(os.path.abspath(__file__))
    index, blob, off = {}, [], 0
    for n, a in out:
        a32 = np.ascontiguousarray(a, dtype="<f4")
        index[n] = {"offset": off, "shape": list(a.shape)}
        blob.append(a32.tobytes())
        off += a32.size
    with open(os.path.join(here, "gpt_reference.bin"), "wb") as f:
        f.write(b"".join(blob))
    meta = {
        "config": {"n_layer": L, "n_head": NH, "n_embd": C, "n_positions": T, "vocab_size": V},
        "batch": B, "lr": LR, "beta1": BETA1, "beta2": BETA2, "eps": EPS, "weight_decay": WD,
        "max_grad_norm": max_norm, "inputs": idx.tolist(), "targets": tgt.tolist(),
        "loss1": loss1, "grad_norm1": norm1, "loss2": loss2, "grad_norm2": norm2,
        "tensors": index,
    }
    with open(os.path.join(here, "gpt_reference.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"loss1={loss1:.6f} norm1={norm1:.6f} loss2={loss2:.6f} norm2={norm2:.6f}")


if __name__ == "__main__":
    main()
