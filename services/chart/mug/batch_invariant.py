"""Convolutions and linear layers whose results for one sample do not depend on the batch size.

Several charts share one UNet call per step, and a chart must come out as it does alone. torch's
default CPU paths do not guarantee that: oneDNN picks its convolution algorithm from the whole
input shape, and a Linear over [batch, tokens, dim] is one matrix product whose row count (batch x
tokens) selects different BLAS kernels for small sizes. Both show up as float32 differences that the
sampler's first step (a division by sqrt(alpha_t)) magnifies about 150 times.

Here a 1-D convolution runs through torch's own im2col + GEMM convolution (`aten.thnn_conv2d`), which
computes each sample with its own matrix product of fixed shape, and a Linear over tokens runs as a
1x1 convolution over the token axis, so it gets the same per-sample products. The op is used only
after `thnn_conv_works()` has checked it against `torch.nn.functional.conv1d`; otherwise (and for
dilated convolutions, which the UNet and the note decoder do not have) the ordinary path runs.
Parameter names are those of `nn.Conv1d` and `nn.Linear`, so checkpoints load unchanged.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.nn import functional


def _thnn_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, padding: int):
    kernel = weight.shape[-1]
    out = torch.ops.aten.thnn_conv2d(
        x.unsqueeze(2), weight.unsqueeze(2), [1, kernel], bias, [1, stride], [0, padding]
    )
    return out.squeeze(2)


@functools.cache
def thnn_conv_works() -> bool:
    """Whether this torch build has the per-sample GEMM convolution and it agrees with conv1d."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 8, 20, generator=generator)
    weight, bias = torch.randn(4, 8, 3, generator=generator), torch.randn(4, generator=generator)
    try:
        with torch.inference_mode():
            found = _thnn_conv1d(x, weight, bias, 2, 1)
    except (AttributeError, RuntimeError):
        return False
    return torch.allclose(
        found, functional.conv1d(x, weight, bias, stride=2, padding=1), atol=1e-5, rtol=1e-5
    )


def _usable(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype == torch.float32 and thnn_conv_works()


class Conv1d(nn.Conv1d):
    """nn.Conv1d computed sample by sample on CPU (undilated, ungrouped, numeric padding)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[batch, in_channels, n] -> [batch, out_channels, n']."""
        plain = self.dilation == (1,) and self.groups == 1 and isinstance(self.padding, tuple)
        if plain and self.padding_mode == "zeros" and _usable(x):
            return _thnn_conv1d(x, self.weight, self.bias, self.stride[0], self.padding[0])
        return super().forward(x)


class Linear(nn.Linear):
    """nn.Linear that, over [batch, tokens, features] on CPU, runs as a 1x1 convolution per sample."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[..., in_features] -> [..., out_features]."""
        if x.dim() == 3 and _usable(x):
            weight = self.weight[:, :, None]
            return _thnn_conv1d(x.transpose(1, 2), weight, self.bias, 1, 0).transpose(1, 2)
        return super().forward(x)
