"""An independent reading of the RecBole atomic files and the leave-one-out split, used to
check the daemon's recommendations and to measure their quality."""

import math
import os


def read_atomic(path):
    with open(path, encoding="utf-8") as handle:
        header = handle.readline().rstrip("\n").split("\t")
        names = [field.split(":")[0] for field in header]
        for line in handle:
            line = line.rstrip("\n")
            if line:
                yield dict(zip(names, line.split("\t")))


def load_split(directory, name="ml-100k"):
    """Per user: (train items in time order, validation item or None, test item or None)."""
    by_user = {}
    for order, row in enumerate(read_atomic(os.path.join(directory, name + ".inter"))):
        by_user.setdefault(row["user_id"], []).append((float(row["timestamp"]), order, row["item_id"]))
    split = {}
    for user, rows in by_user.items():
        items = [item for _, _, item in sorted(rows)]
        test = items.pop() if len(items) >= 2 else None
        valid = items.pop() if len(items) >= 2 else None
        split[user] = (items, valid, test)
    return split


def item_ids(directory, name="ml-100k"):
    return [row["item_id"] for row in read_atomic(os.path.join(directory, name + ".item"))]


def ranking_metrics(ranks, cutoffs=(10, 20)):
    """Recall@K, NDCG@K and MRR@K for one held-out item per user, given 0-based ranks."""
    result = {}
    n = len(ranks)
    for k in cutoffs:
        hits = [r for r in ranks if r < k]
        result["recall@%d" % k] = len(hits) / n
        result["ndcg@%d" % k] = sum(1 / math.log2(r + 2) for r in hits) / n
        result["mrr@%d" % k] = sum(1 / (r + 1) for r in hits) / n
    return result
