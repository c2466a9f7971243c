"""Keeping a chart's numbers independent of how many charts share its batch.

Several charts share one UNet call per step, and a chart must come out as it does alone. Two of
torch's CPU paths change float32 results with the batch size, which the sampler's first step (a
division by sqrt(alpha_t) ~ 0.0064) magnifies about 150 times:

- a Linear over [batch, tokens, features] is one matrix product whose row count (batch x tokens)
  selects different BLAS kernels for small sizes. `Linear` below runs it as a 1x1 convolution over
  the token axis through torch's im2col + GEMM convolution (`aten.thnn_conv2d`), which computes each
  sample with its own product of fixed shape;
- oneDNN computes a convolution with another algorithm for a batch of one row than for two or more
  (for two or more, each sample's result is the same whatever the batch). So the sampler and the note
  decoder never run a batch of one: a single row is run twice (`at_least_two_rows`).

The tests check the outcome end to end: charts made together equal the charts made alone, bit for bit.
The op is used only after `thnn_conv_works()` has checked it against `torch.nn.functional.conv1d`;
otherwise the ordinary path runs. Parameter names are those of `nn.Linear`, so checkpoints load
unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional


def _thnn_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    kernel = weight.shape[-1]
    out = torch.ops.aten.thnn_conv2d(x.unsqueeze(2), weight.unsqueeze(2), [1, kernel], bias, [1, 1], [0, 0])
    return out.squeeze(2)


@functools.cache
def thnn_conv_works() -> bool:
    """Whether this torch build has the per-sample GEMM convolution and it agrees with conv1d."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 8, 20, generator=generator)
    weight, bias = torch.randn(4, 8, 1, generator=generator), torch.randn(4, generator=generator)
    try:
        with torch.inference_mode():
            found = _thnn_conv1d(x, weight, bias)
    except (AttributeError, RuntimeError):
        return False
    return torch.allclose(found, functional.conv1d(x, weight, bias), atol=1e-5, rtol=1e-5)


class Linear(nn.Linear):
    """nn.Linear that, over [batch, tokens, features] on CPU, runs as a 1x1 convolution per sample."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[..., in_features] -> [..., out_features]."""
        if x.dim() == 3 and x.device.type == "cpu" and x.dtype == torch.float32 and thnn_conv_works():
            return _thnn_conv1d(x.transpose(1, 2), self.weight[:, :, None], self.bias).transpose(1, 2)
        return super().forward(x)


def at_least_two_rows(run: Callable[..., torch.Tensor], *batches: torch.Tensor) -> torch.Tensor:
    """`run(*batches)`, where a batch of one row is run as two identical rows and the first kept, so
    that a lone chart takes the convolution algorithm every larger batch takes."""
    if batches[0].shape[0] != 1:
        return run(*batches)
    return run(*(torch.cat([batch, batch]) for batch in batches))[:1]
