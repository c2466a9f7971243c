"""Hypothesis strategies for tensors of every dtype the contract carries, shared by codec tests."""

from __future__ import annotations

import ml_dtypes
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

NUMPY_DTYPES = [np.float32, np.float16, ml_dtypes.bfloat16, np.int64, np.int32, np.int16, np.bool_]


def arrays(dtype) -> st.SearchStrategy[np.ndarray]:
    """Arrays of `dtype` with 0 to 4 dimensions of 0 to 7; bfloat16 draws every bit pattern (NaNs too)."""
    shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=7)
    if dtype is ml_dtypes.bfloat16:
        raw = hnp.arrays(np.uint16, shapes)
        return raw.map(lambda a: a.view(ml_dtypes.bfloat16))
    return hnp.arrays(dtype, shapes)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """True when dtype, shape and every byte agree (NaN payloads included)."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
