"""The audio encoder (the reference's `MelspectrogramScaleEncoder1D`): mel features to the UNet's
audio inputs, one per resolution.

A 1-D conv (k3) from the mel bins to `middle_channels`, then one stage per `channel_mult` entry:
every stage but the first halves the length, then `num_res_blocks` dilated residual blocks
(dilations (1, 2) for even block indices, (4, 8) for odd ones), each followed by a self-attention
transformer when the stage's downsampling factor is in `attention_resolutions`. Every stage's
output is kept; the UNet reads the last len(unet channel_mult) of them. It runs once per song, not
per sampler step.
"""

from __future__ import annotations

import torch
from torch import nn

from services.chart.mug.config import AudioEncoderConfig
from services.chart.mug.layers import Downsample, ResnetBlock
from services.chart.mug.transformer import ContextualTransformer


class EncoderStage(nn.Module):
    """One resolution: optional downsample, residual blocks, optional transformers."""

    def __init__(self, in_channels: int, out_channels: int, config: AudioEncoderConfig, factor: int) -> None:
        super().__init__()
        if factor > 1:
            self.downsample = Downsample(in_channels)
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()
        channels = in_channels
        for index in range(config.num_res_blocks):
            dilations = (1, 2) if index % 2 == 0 else (4, 8)
            self.block.append(ResnetBlock(channels, out_channels, config.num_groups, dilations))
            if factor in config.attention_resolutions:
                heads = config.num_heads
                self.attn.append(ContextualTransformer(out_channels, heads, out_channels // heads))
            channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[batch, in_channels, n] -> [batch, out_channels, n or n / 2]."""
        if hasattr(self, "downsample"):
            x = self.downsample(x)
        for index, block in enumerate(self.block):
            x = block(x)
            if len(self.attn):
                x = self.attn[index](x)
        return x


class AudioEncoder(nn.Module):
    """Mel features [batch, n_freq, frames] to one feature map per stage."""

    def __init__(self, config: AudioEncoderConfig) -> None:
        super().__init__()
        self.config = config
        middle = config.middle_channels
        self.conv_in = nn.Conv1d(config.n_freq, middle, 3, padding=1)
        in_mult = (1, *config.channel_mult)
        self.down = nn.ModuleList(
            EncoderStage(middle * in_mult[level], middle * mult, config, 2**level)
            for level, mult in enumerate(config.channel_mult)
        )

    def forward(self, mel: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's output, finest first: [batch, channels_i, frames / 2^i]."""
        h = self.conv_in(mel)
        outputs = []
        for stage in self.down:
            h = stage(h)
            outputs.append(h)
        return outputs
