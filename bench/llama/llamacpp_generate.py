"""Generation speed of SmolLM2-135M-Instruct in llama.cpp (through llama-cpp-python's
bindings of llama.h), the peer of `llama-bench generate`: the same GGUF file, its 4-bit
weights used as stored.

Greedy decoding; BATCH sequences of the same PROMPT tokens decoded together (one llama_batch
per step holding one token of every sequence, n_seq_max = BATCH), NEW tokens per sequence.
Prints one JSON line per run: generated tokens over wall time including the prefill.
"""

import argparse
import ctypes
import json
import resource
import time

import llama_cpp as L

TEXT = ("Recommendation reasons tell a viewer why a film suits them: the genres they return to, "
        "the decades they favour, the people who share their taste. ") * 40


def tokenize(vocab, text, limit):
    buffer = (L.llama_token * 4096)()
    count = L.llama_tokenize(vocab, text.encode(), len(text.encode()), buffer, 4096, False, False)
    assert count >= limit, count
    return [buffer[i] for i in range(limit)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gguf", required=True)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    L.llama_backend_init()
    # The callback object must outlive every llama.cpp call (a temporary is freed at once and
    # the next log line jumps into freed memory).
    quiet = L.llama_log_callback(lambda level, text, data: None)
    L.llama_log_set(quiet, ctypes.c_void_p(0))
    model = L.llama_model_load_from_file(args.gguf.encode(), L.llama_model_default_params())
    vocab = L.llama_model_get_vocab(model)
    params = L.llama_context_default_params()
    B, P, N = args.batch, args.prompt, args.new
    params.n_ctx = B * (P + N) + 64
    params.n_batch = max(B * P, 512)
    params.n_ubatch = 512
    params.n_seq_max = B
    params.n_threads = args.threads
    params.n_threads_batch = args.threads
    context = L.llama_init_from_model(model, params)
    prompt = tokenize(vocab, TEXT, P)
    sampler = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    L.llama_sampler_chain_add(sampler, L.llama_sampler_init_greedy())
    batch = L.llama_batch_init(B * P, 0, B)

    def fill(items):
        batch.n_tokens = len(items)
        for k, (token, position, sequence, logits) in enumerate(items):
            batch.token[k] = token
            batch.pos[k] = position
            batch.n_seq_id[k] = 1
            batch.seq_id[k][0] = sequence
            batch.logits[k] = logits

    def run(new):
        L.llama_memory_clear(L.llama_get_memory(context), True)
        fill([(t, i, s, i == P - 1) for s in range(B) for i, t in enumerate(prompt)])
        assert L.llama_decode(context, batch) == 0
        # Index of each sequence's logits row in the last batch.
        rows = [s * P + P - 1 for s in range(B)]
        outputs = [[] for _ in range(B)]
        for step in range(new):
            tokens = [L.llama_sampler_sample(sampler, context, rows[s]) for s in range(B)]
            for s in range(B):
                outputs[s].append(tokens[s])
            if step == new - 1:
                break
            fill([(tokens[s], P + step, s, True) for s in range(B)])
            assert L.llama_decode(context, batch) == 0
            rows = list(range(B))
        return outputs

    run(4)  # warm-up
    for _ in range(args.runs):
        start = time.perf_counter()
        outputs = run(N)
        seconds = time.perf_counter() - start
        print(json.dumps({
            "impl": "llama.cpp", "batch": B, "tokens_per_s": B * N / seconds, "seconds": seconds,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "first_tokens": outputs[0][:8],
        }), flush=True)
    L.llama_batch_free(batch)
    L.llama_sampler_free(sampler)
    L.llama_free(context)
    L.llama_model_free(model)


if __name__ == "__main__":
    main()
