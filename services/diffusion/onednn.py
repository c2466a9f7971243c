"""A drop-in `nn.Linear` that can run its float32 CPU product through oneDNN instead of BLAS.

At the sampler's shapes (10 to 40 rows against 1024..8192-wide weights) oneDNN's matmul is about
twice as fast as the MKL sgemm that `nn.Linear` uses on the AMD CPUs we run on. The op is torch's
own (`torch.ops.mkldnn._linear_pointwise`, the one Inductor emits for CPU linears); it is used only
after `onednn_linear_works()` has checked it against `torch.nn.functional.linear`, so a torch build
without it falls back to the ordinary path. Parameter names are those of `nn.Linear`.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.nn import functional


def _onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


@functools.cache
def onednn_linear_works() -> bool:
    """Whether this torch build has the oneDNN linear and it agrees with functional.linear."""
    if not torch.backends.mkldnn.is_available():
        return False
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 16, generator=generator)
    weight, bias = torch.randn(8, 16, generator=generator), torch.randn(8, generator=generator)
    try:
        with torch.inference_mode():
            found = _onednn_linear(x, weight, bias)
    except (AttributeError, RuntimeError):
        return False
    return torch.allclose(found, functional.linear(x, weight, bias), atol=1e-5, rtol=1e-5)


class Linear(nn.Linear):
    """nn.Linear whose float32 CPU forward goes through oneDNN when `use_onednn` is set."""

    use_onednn = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = x W^T + b."""
        if self.use_onednn and x.dtype == torch.float32 and x.device.type == "cpu":
            return _onednn_linear(x, self.weight, self.bias)
        return super().forward(x)


def set_onednn(module: nn.Module, enabled: bool) -> bool:
    """Route every `Linear` in `module` through oneDNN (when it works here) or BLAS; returns the choice."""
    enabled = enabled and onednn_linear_works()
    for child in module.modules():
        if isinstance(child, Linear):
            child.use_onednn = enabled
    return enabled
