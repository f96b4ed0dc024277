#!/usr/bin/env python3
"""The peer of llama-bench: the same fine-tuning step with transformers (+ peft) on PyTorch CPU.

Model: transformers' LlamaForCausalLM with the SmolLM2-135M shape (30 layers, hidden 576,
intermediate 1536, 9 heads / 3 key-value heads, vocab 49152, rope theta 100000, tied
embeddings), float32, random weights, the default attention implementation (sdpa).
Batch B rows of T random tokens, labels -100 except the last K positions of each row, so the
loss covers B*K tokens as in llama-bench. `lora`: peft LoraConfig(r=R, lora_alpha=2R,
lora_dropout=0.05, target_modules q/k/v/o) on the frozen model; `full`: every parameter.
Step: loss = model(input_ids, labels).loss; backward; clip_grad_norm_(trainable, 1.0);
AdamW(lr 2e-4, betas 0.9/0.999, weight_decay 0); zero_grad. Prints one JSON line.
"""
import argparse
import json
import resource
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["lora", "full"])
    for k, v in dict(batch=8, time=256, loss_tokens=64, rank=8, steps=3, warmup=1, threads=2).items():
        ap.add_argument("--" + k.replace("_", "-"), type=int, default=v)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    cfg = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                      num_key_value_heads=3, vocab_size=49152, rope_theta=100000.0, rms_norm_eps=1e-5,
                      max_position_embeddings=2048, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).float()
    if a.mode == "lora":
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=a.rank, lora_alpha=2 * a.rank, lora_dropout=0.05,
                                                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                                 task_type="CAUSAL_LM"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, betas=(0.9, 0.999), weight_decay=0.0)
    ids = torch.randint(0, cfg.vocab_size, (a.batch, a.time))
    labels = torch.full_like(ids, -100)
    labels[:, a.time - a.loss_tokens:] = ids[:, a.time - a.loss_tokens:]
    times, cpu = [], []
    for s in range(a.warmup + a.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        if s >= a.warmup:
            times.append(dt)
            cpu.append(dc)
    med = statistics.median(times)
    print(json.dumps({"impl": "torch", "mode": a.mode, "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "batch": a.batch, "time": a.time, "loss_tokens": a.loss_tokens, "rank": a.rank,
                      "trainable": sum(p.numel() for p in params), "step_s": med,
                      "tokens_per_s": a.batch * a.time / med, "cpu_s": statistics.median(cpu), "loss": loss.item(),
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "steps": times}))


if __name__ == "__main__":
    main()
