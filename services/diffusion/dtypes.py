"""The generation stage's `dtype` setting as a torch dtype, for every family."""

from __future__ import annotations

import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_dtype(device: str, dtype: str, network: str = "DiT") -> torch.dtype:
    """The torch dtype for a config's `dtype` name; CPU runs only in float32 (`network` names the
    family's model in the message)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if torch.device(device).type == "cpu" and dtype != "float32":
        raise ValueError(f"dtype {dtype} is for CUDA; on CPU the {network} runs in float32")
    return DTYPES[dtype]
