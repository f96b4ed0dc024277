#!/usr/bin/env python3
"""Writes gguf_reference.json: what the `gguf` Python package (GGML's own reader) reads from
SmolLM2-135M-Instruct.Q4_1.gguf, for GGUFTests to compare against.

Recorded: the header numbers, every scalar metadata value with its type, the length, element
type and first values of every array, and for up to 6 tensors of each type present (the
first 5 and the last in file order) the name, row-major shape, type, data offset and size,
the dequantized values at 40 fixed indices and the float64 sum and sum of magnitudes of all
dequantized values.

    python3 Tests/CURecTensorTests/Fixtures/make_gguf_reference.py [MODEL.gguf]

The model defaults to var/models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf
(fetched by scripts/fetch-lm).
"""
import json
import os
import sys

import numpy as np
from gguf import GGUFReader, GGUFValueType
from gguf.quants import dequantize

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
DEFAULT_MODEL = os.path.join(ROOT, "var/models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gguf_reference.json")

TYPE_NAMES = {
    GGUFValueType.UINT8: "uint8", GGUFValueType.INT8: "int8", GGUFValueType.UINT16: "uint16",
    GGUFValueType.INT16: "int16", GGUFValueType.UINT32: "uint32", GGUFValueType.INT32: "int32",
    GGUFValueType.FLOAT32: "float32", GGUFValueType.BOOL: "bool", GGUFValueType.STRING: "string",
    GGUFValueType.ARRAY: "array", GGUFValueType.UINT64: "uint64", GGUFValueType.INT64: "int64",
    GGUFValueType.FLOAT64: "float64",
}


def plain(value):
    """Numpy scalars to JSON-ready Python values (floats exactly, as doubles)."""
    if isinstance(value, (np.floating, float)):
        return float(value)
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    return value


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_MODEL
    reader = GGUFReader(path)
    header = {
        "version": plain(reader.fields["GGUF.version"].contents()),
        "tensor_count": plain(reader.fields["GGUF.tensor_count"].contents()),
        "metadata_count": plain(reader.fields["GGUF.kv_count"].contents()),
        "alignment": int(reader.alignment),
        "data_start": int(reader.data_offset),
    }
    scalars, arrays = {}, {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        kind = TYPE_NAMES[field.types[0]]
        if kind == "array":
            values = field.contents()
            arrays[key] = {
                "element_type": TYPE_NAMES[field.types[1]],
                "count": len(values),
                "head": [plain(v) for v in values[:5]],
                "tail": plain(values[-1]) if values else None,
            }
        else:
            scalars[key] = {"type": kind, "value": plain(field.contents())}

    by_type = {}
    for tensor in reader.tensors:
        by_type.setdefault(tensor.tensor_type.name, []).append(tensor)
    chosen = []
    for name in sorted(by_type):
        group = by_type[name]
        chosen += group[:5] + ([group[-1]] if len(group) > 5 else [])

    tensors = []
    for tensor in chosen:
        values = dequantize(tensor.data, tensor.tensor_type).astype(np.float32).reshape(-1)
        count = values.size
        # 40 fixed indices: both ends, block boundaries of the first rows, and a seeded spread.
        rng = np.random.default_rng(20261130)
        fixed = [0, 1, 15, 16, 17, 31, 32, 33, count // 2, count - 32, count - 17, count - 16, count - 1]
        spread = rng.integers(0, count, size=40 - len(fixed)).tolist()
        indices = sorted({i for i in fixed + spread if 0 <= i < count})
        tensors.append({
            "name": tensor.name,
            # GGUF lists ne[] innermost first; the Swift reader reports it outermost first.
            "shape": [int(d) for d in reversed(tensor.shape.tolist())],
            "type": tensor.tensor_type.name,
            "offset": int(tensor.data_offset - reader.data_offset),
            "byte_count": int(tensor.n_bytes),
            "indices": indices,
            "values": [float(values[i]) for i in indices],
            "sum": float(np.sum(values, dtype=np.float64)),
            "sum_abs": float(np.sum(np.abs(values), dtype=np.float64)),
        })

    reference = {
        "file": os.path.basename(path),
        "header": header,
        "scalars": scalars,
        "arrays": arrays,
        "type_counts": {name: len(group) for name, group in sorted(by_type.items())},
        "tensors": tensors,
    }
    with open(OUT, "w") as out:
        json.dump(reference, out, indent=1, ensure_ascii=False)
        out.write("\n")
    print(f"wrote {OUT}: {len(scalars)} scalars, {len(arrays)} arrays, {len(tensors)} tensors")


if __name__ == "__main__":
    main()
