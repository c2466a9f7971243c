"""Building blocks shared by Mug-Diffusion's networks (1-D convolutions throughout).

Every GroupNorm uses eps 1e-6 (32 groups unless a config's `num_groups` applies). Module attribute
names follow the published checkpoint's keys, so state dicts load without renaming.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional

NORM_EPS = 1e-6
DEFAULT_GROUPS = 32


def group_norm(channels: int, groups: int = DEFAULT_GROUPS) -> nn.GroupNorm:
    """The reference's GroupNorm: affine, eps 1e-6."""
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=NORM_EPS, affine=True)


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [batch, dim] of integer timesteps: cosines first, then sines, with
    frequencies exp(-ln(max_period) * k / half); an odd `dim` gets a zero last column."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32) / half)
    args = timesteps[:, None].float() * freqs[None].to(timesteps.device)
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class ResnetBlock(nn.Module):
    """GroupNorm -> SiLU -> conv k3 twice, plus the input (through a 1x1 conv when channels change).

    `dilations` sets each conv's dilation (and padding); the audio encoder alternates (1, 2) and
    (4, 8), the note decoder uses (1, 1).
    """

    def __init__(
        self, in_channels: int, out_channels: int, groups: int, dilations: tuple[int, int] = (1, 1)
    ) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels, groups)
        self.conv1 = nn.Conv1d(in_channels, out_channels, 3, padding=dilations[0], dilation=dilations[0])
        self.norm2 = group_norm(out_channels, groups)
        self.conv2 = nn.Conv1d(out_channels, out_channels, 3, padding=dilations[1], dilation=dilations[1])
        self.nin_shortcut = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[batch, in_channels, n] -> [batch, out_channels, n]."""
        h = self.conv1(functional.silu(self.norm1(x)))
        h = self.conv2(functional.silu(self.norm2(h)))
        shortcut = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return shortcut + h


class Downsample(nn.Module):
    """Halve the length: one zero padded on the right, then a conv k3 with stride 2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[batch, c, n] -> [batch, c, n / 2]."""
        return self.conv(functional.pad(x, (0, 1)))


class Upsample(nn.Module):
    """Double the length: nearest-neighbour repeat, then a conv k3."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[batch, c, n] -> [batch, c, 2 n]."""
        return self.conv(functional.interpolate(x, scale_factor=2.0, mode="nearest"))
