#!/usr/bin/env python3
"""Writes llama_quantized_reference.json: what llama.cpp (through llama-cpp-python) computes
for the prompts of llama_reference.json with SmolLM2-135M-Instruct's Q4_1 GGUF file used as
stored, the peer of the engine's `LlamaModel.load(gguf:weights: .quantized)`.

llama.cpp multiplies the Q4_1 projections and the Q8_0 head by activations quantized to 8 bits
per block of 32 (its q8_1 / q8_0 activation blocks), the same arithmetic as the engine's
quantized products, so both deviate from the float32 model of the dequantized weights by the
same kind of rounding. The key/value cache is kept in float32 here (llama.cpp's default is
float16), one rounding fewer between the two.

Contents, per prompt: logits at every position for the reference's `vocab_ids`, and per
position the arg-max id, top-2 margin and logsumexp over the vocabulary; the largest
deviation of these logits from the float64 reference; and, for the reference's greedy
prompts, llama.cpp's own 64-token greedy continuation.

The Swift test LlamaQuantizedSmolLM2Tests compares against it. Rerun from this folder:
`python3 make_llama_quantized_reference.py`.
"""
import ctypes
import json
import os

import llama_cpp as L
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
MODEL = os.path.join(ROOT, "var", "models", "SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")
REFERENCE = os.path.join(HERE, "llama_reference.json")
OUT = os.path.join(HERE, "llama_quantized_reference.json")
GGML_TYPE_F32 = 0


def main():
    reference = json.load(open(REFERENCE))
    L.llama_backend_init()
    quiet = L.llama_log_callback(lambda level, text, data: None)  # kept alive while loaded
    L.llama_log_set(quiet, ctypes.c_void_p(0))
    model = L.llama_model_load_from_file(MODEL.encode(), L.llama_model_default_params())
    V = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    params = L.llama_context_default_params()
    params.n_ctx = 256
    params.n_batch = 256
    params.n_threads = 2
    params.n_threads_batch = 2
    params.type_k = GGML_TYPE_F32
    params.type_v = GGML_TYPE_F32
    context = L.llama_init_from_model(model, params)
    batch = L.llama_batch_init(256, 0, 1)

    def decode(tokens, start, all_logits):
        L.llama_memory_seq_rm(L.llama_get_memory(context), 0, start, -1)
        batch.n_tokens = len(tokens)
        for k, token in enumerate(tokens):
            batch.token[k] = token
            batch.pos[k] = start + k
            batch.n_seq_id[k] = 1
            batch.seq_id[k][0] = 0
            batch.logits[k] = all_logits or k == len(tokens) - 1
        assert L.llama_decode(context, batch) == 0
        rows = range(len(tokens)) if all_logits else [len(tokens) - 1]
        return [np.ctypeslib.as_array(L.llama_get_logits_ith(context, r), shape=(V,)).astype(np.float64) for r in rows]

    prompts, worst = [], 0.0
    for p in reference["prompts"]:
        L.llama_memory_clear(L.llama_get_memory(context), True)
        rows = decode(p["ids"], 0, True)
        entry = {"ids": p["ids"], "logits": [], "argmax": [], "top2_margin": [], "logsumexp": []}
        for t, row in enumerate(rows):
            picked = [float(row[i]) for i in reference["vocab_ids"]]
            worst = max(worst, max(abs(a - b) for a, b in zip(picked, p["logits"][t])))
            top = np.sort(row)[-2:]
            mx = row.max()
            entry["logits"].append(picked)
            entry["argmax"].append(int(row.argmax()))
            entry["top2_margin"].append(float(top[1] - top[0]))
            entry["logsumexp"].append(float(mx + np.log(np.exp(row - mx).sum())))
        prompts.append(entry)

    greedy = []
    for g in reference["greedy"]:
        ids = reference["prompts"][g["prompt"]]["ids"]
        L.llama_memory_clear(L.llama_get_memory(context), True)
        row = decode(ids, 0, False)[0]
        tokens = []
        for step in range(len(g["tokens"])):
            tokens.append(int(row.argmax()))
            row = decode([tokens[-1]], len(ids) + step, False)[0]
        greedy.append({"prompt": g["prompt"], "tokens": tokens})

    L.llama_batch_free(batch)
    L.llama_free(context)
    L.llama_model_free(model)
    with open(OUT, "w") as f:
        json.dump({
            "llama_cpp_python": L.__version__,
            "vocab_ids": reference["vocab_ids"],
            "max_abs_logit_vs_float64": worst,
            "prompts": prompts,
            "greedy": greedy,
        }, f)
        f.write("\n")
    print(f"wrote {OUT}: llama.cpp vs float64 reference max |logit difference| {worst:.4f}")


if __name__ == "__main__":
    main()
