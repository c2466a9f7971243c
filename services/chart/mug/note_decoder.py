"""The note VAE's decoder: a sampled latent [16, L] to note logits [16, 8 L].

conv k3 in (to middle x the deepest multiplier), two residual blocks, then per level from the
deepest, num_res_blocks + 1 residual blocks and (all but the top level) a nearest x2 upsample with a
conv, and GroupNorm -> SiLU -> conv k3 out. Output channels per key (4 keys): 0-3 note start,
4-7 start offset in the frame, 8-11 holding, 12-15 end offset; raw values (logits and offsets).
The VAE's encoder is only used in training and is not built here.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from services.chart.mug.config import NoteDecoderConfig
from services.chart.mug.layers import ResnetBlock, Upsample, group_norm


class DecoderLevel(nn.Module):
    """Residual blocks of one resolution, and the upsample that leaves it (not at the top level)."""

    def __init__(self, in_channels: int, out_channels: int, blocks: int, groups: int, upsample: bool) -> None:
        super().__init__()
        self.block = nn.ModuleList(
            ResnetBlock(in_channels if index == 0 else out_channels, out_channels, groups)
            for index in range(blocks)
        )
        if upsample:
            self.upsample = Upsample(out_channels)


class NoteDecoder(nn.Module):
    """Latent [batch, z_channels, L] -> note logits [batch, x_channels, L * 2^(levels - 1)]."""

    def __init__(self, config: NoteDecoderConfig) -> None:
        super().__init__()
        self.config = config
        groups = config.num_groups
        channels = config.middle_channels * config.channel_mult[-1]
        self.conv_in = nn.Conv1d(config.z_channels, channels, 3, padding=1)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(channels, channels, groups)
        self.mid.block_2 = ResnetBlock(channels, channels, groups)
        levels: list[DecoderLevel] = []
        for level in reversed(range(len(config.channel_mult))):
            out_channels = config.middle_channels * config.channel_mult[level]
            levels.insert(
                0, DecoderLevel(channels, out_channels, config.num_res_blocks + 1, groups, level != 0)
            )
            channels = out_channels
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(channels, groups)
        self.conv_out = nn.Conv1d(channels, config.x_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Decode latents (divided by the VAE's scale first, 1.0 for the published model)."""
        h = self.conv_in(z / self.config.scale)
        h = self.mid.block_2(self.mid.block_1(h))
        for level in reversed(self.up):
            for block in level.block:
                h = block(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(functional.silu(self.norm_out(h)))
