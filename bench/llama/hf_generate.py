"""Generation speed of SmolLM2-135M-Instruct in transformers (the file loaded dequantized to
float32), the peer of `llama-bench generate`.

Greedy decoding, every row of the batch has the same PROMPT-token prompt (a fixed slice of a
text repeated, so no padding), NEW tokens generated per row (generation cannot end early).
Prints one JSON line per run: tokens/s counts generated tokens over wall time including the
prefill, like the Swift side.
"""

import argparse
import json
import os
import resource
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

TEXT = ("Recommendation reasons tell a viewer why a film suits them: the genres they return to, "
        "the decades they favour, the people who share their taste. ") * 40


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gguf", required=True)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    directory, name = os.path.split(os.path.abspath(args.gguf))
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, torch_dtype=torch.float32)
    model.eval()
    ids = tokenizer(TEXT, return_tensors="pt").input_ids[:, : args.prompt]
    assert ids.shape[1] == args.prompt
    batch = ids.repeat(args.batch, 1)
    mask = torch.ones_like(batch)
    with torch.inference_mode():
        model.generate(batch, attention_mask=mask, max_new_tokens=4, min_new_tokens=4, do_sample=False)  # warm-up
        for _ in range(args.runs):
            start = time.perf_counter()
            out = model.generate(batch, attention_mask=mask, max_new_tokens=args.new, min_new_tokens=args.new,
                                 do_sample=False, pad_token_id=tokenizer.eos_token_id)
            seconds = time.perf_counter() - start
            generated = (out.shape[1] - args.prompt) * args.batch
            print(json.dumps({
                "impl": "transformers", "batch": args.batch, "tokens_per_s": generated / seconds,
                "seconds": seconds, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "first_tokens": out[0, args.prompt: args.prompt + 8].tolist(),
            }), flush=True)


if __name__ == "__main__":
    main()
