#!/usr/bin/env python3
"""Reference values for the paired significance code (PairedSignificance.swift).

Writes significance_reference.json next to this file: fixed vectors of paired
differences and what scipy.stats.wilcoxon (two-sided, zero_method="wilcox",
correction=False) returns for them, with the method forced where the Swift code
uses a different one than scipy's "auto" (it never runs a permutation test), and
scipy.stats.bootstrap's percentile interval of the mean for loose comparison
(the resampling streams differ, so only the interval's position is comparable).

    pip install scipy numpy
    python3 Tests/CURecPipelineTests/Fixtures/make_significance_reference.py
"""
import json
import math
import os

import numpy as np
import scipy
from scipy import stats


def ndcg(rank):
    return 1.0 / math.log2(rank + 2) if rank < 10 else 0.0


def ndcg_like(n, seed, shift):
    """Per-user NDCG@10 differences of two rankers: many zeros and many ties."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 40, size=n)
    moved = np.clip(base - rng.integers(-3, 3 + shift, size=n), 0, None)
    return [round(ndcg(int(b)) - ndcg(int(a)), 12) for a, b in zip(base, moved)]


cases = [
    ("no ties, exact", [1.5, -0.25, 2.0, 3.25, -4.5, 0.75, 5.5, 6.125], "exact"),
    ("scipy docs example, exact", [6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75], "exact"),
    ("all positive, exact", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], "exact"),
    ("ties and zeros, normal", [0.0, 1.0, -1.0, 2.0, 2.0, 0.0, 3.0, -2.0, 4.0, 1.0], "asymptotic"),
    ("fifty-one values, normal", [((i * 37) % 101 - 45) / 7.0 for i in range(51)], "asymptotic"),
    ("per-user NDCG, 943 users, shifted", ndcg_like(943, 1, 1), "asymptotic"),
    ("per-user NDCG, 943 users, no shift", ndcg_like(943, 2, 0), "asymptotic"),
    ("per-user NDCG, 300 users, shifted", ndcg_like(300, 3, 2), "asymptotic"),
]

out = {"scipy": scipy.__version__, "numpy": np.__version__, "cases": []}
for name, values, method in cases:
    d = np.asarray(values, dtype=float)
    result = stats.wilcoxon(d, zero_method="wilcox", correction=False, alternative="two-sided", method=method)
    d_nonzero = d[d != 0]
    r = stats.rankdata(np.abs(d_nonzero))
    boot = stats.bootstrap((d,), np.mean, confidence_level=0.95, n_resamples=20000, method="percentile",
                           rng=np.random.default_rng(0))
    out["cases"].append({
        "name": name,
        "differences": [float(x) for x in d],
        "method": "exact" if method == "exact" else "normal",
        "statistic": float(result.statistic),
        "rank_sum_positive": float(r[d_nonzero > 0].sum()),
        "rank_sum_negative": float(r[d_nonzero < 0].sum()),
        "p_value": float(result.pvalue),
        "mean": float(d.mean()),
        "std_error": float(d.std(ddof=1) / math.sqrt(len(d))),
        "bootstrap_low": float(boot.confidence_interval.low),
        "bootstrap_high": float(boot.confidence_interval.high),
    })

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "significance_reference.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
print("wrote", path)
