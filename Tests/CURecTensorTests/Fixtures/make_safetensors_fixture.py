#!/usr/bin/env python3
"""Writes python_numpy.safetensors with the reference `safetensors` package (numpy API).

The Swift test SafeTensorsTests reads it back and checks every value against the formulas
below. Rerun with `python3 make_safetensors_fixture.py` from this folder.
"""
import numpy as np
from safetensors.numpy import save_file

tensors = {
    # Values k * 0.25 - 1 are exact in every float type used here.
    "layer.weight": (np.arange(12, dtype=np.float32) * 0.25 - 1.0).reshape(3, 4),
    "layer.bias": np.array([0.5, -2.0, 65504.0], dtype=np.float16),
    "scale": np.array(3.14159265358979, dtype=np.float64),  # a scalar: shape []
    "positions": np.arange(5, dtype=np.int64).reshape(1, 5),
    "empty": np.zeros((0, 3), dtype=np.float32),
}
save_file(tensors, "python_numpy.safetensors", metadata={"format": "np", "source": "fixture"})
