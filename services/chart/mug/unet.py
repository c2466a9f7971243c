"""The denoiser: a 1-D UNet over the latent with the audio features, cross-attention to the chart
prompt and S4 layers; it predicts the noise (eps).

Layout (module names follow the published keys): a sinusoidal timestep embedding through
Linear -> SiLU -> Linear (4 x model_channels); conv k3 in. Per level: the audio features of that
length are concatenated on the channel axis, then `num_res_blocks` blocks, each a time-conditioned
residual block [+ transformer when the level's factor is in `attention_resolutions`] [+ S4 layer];
a stride-2 downsample between levels. Middle: residual block, transformer, residual block. Decoder,
deepest level first: the level's audio features are concatenated again, then num_res_blocks + 1
blocks each taking the concatenation with the matching saved activation, with a transformer where
the encoder side had one, an S4 layer in all but the last block of a level, and a x2 upsample closing
every level but the top. Out: GroupNorm -> SiLU -> conv k3.

What depends only on the latent length (each S4 kernel's spectrum, each attention's position
terms) is gathered once into a `UNetPlan` and reused by every step of a sampling run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from services.chart.mug.config import UNetConfig
from services.chart.mug.layers import Downsample, Upsample, group_norm, timestep_embedding
from services.chart.mug.s4 import S4Layer
from services.chart.mug.transformer import ContextualTransformer


class AudioConcat(nn.Module):
    """Marks where a level's audio features join the activations (no weights)."""


class TimestepResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv k3; + Linear(SiLU(time embedding)); GroupNorm -> SiLU -> conv k3;
    plus the input (through a 1x1 conv when channels change)."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int, scale_shift: bool) -> None:
        super().__init__()
        self.scale_shift = scale_shift
        self.in_layers = nn.Sequential(
            group_norm(channels), nn.SiLU(), nn.Conv1d(channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, out_channels * (2 if scale_shift else 1))
        )
        # Index 2 is the reference's dropout, a no-op at inference.
        self.out_layers = nn.Sequential(
            group_norm(out_channels),
            nn.SiLU(),
            nn.Identity(),
            nn.Conv1d(out_channels, out_channels, 3, padding=1),
        )
        self.skip_connection = (
            nn.Conv1d(channels, out_channels, 1) if channels != out_channels else nn.Identity()
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """x [batch, channels, n], emb [batch, emb_channels] -> [batch, out_channels, n]."""
        h = self.in_layers(x)
        emb_out = self.emb_layers(emb)[..., None]
        if self.scale_shift:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class UNetBlock(nn.ModuleList):
    """One entry of input_blocks / middle_block / output_blocks: layers applied in order."""


@dataclass
class UNetPlan:
    """Per-length constants of one UNet: S4 kernel spectra and attention position terms, keyed by
    the module that uses them."""

    spectra: dict[nn.Module, torch.Tensor] = field(default_factory=dict)
    terms: dict[nn.Module, list] = field(default_factory=dict)


class UNet(nn.Module):
    """Noise prediction eps(x_t, t, prompt, audio) for latents [batch, in_channels, L]."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        mc = config.model_channels
        emb = mc * 4
        self.time_embed = nn.Sequential(nn.Linear(mc, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.input_blocks = nn.ModuleList([UNetBlock([nn.Conv1d(config.in_channels, mc, 3, padding=1)])])
        skip_channels = [mc]
        channels, factor = mc, 1
        for level, mult in enumerate(config.channel_mult):
            self.input_blocks.append(AudioConcat())
            channels += config.audio_channels[level]
            for _ in range(config.num_res_blocks):
                layers = [TimestepResBlock(channels, emb, mult * mc, config.use_scale_shift_norm)]
                channels = mult * mc
                if factor in config.attention_resolutions:
                    layers.append(self._transformer(channels))
                if config.s4_layer:
                    layers.append(S4Layer(channels))
                self.input_blocks.append(UNetBlock(layers))
                skip_channels.append(channels)
            if level != len(config.channel_mult) - 1:
                self.input_blocks.append(UNetBlock([Downsample(channels)]))
                skip_channels.append(channels)
                factor *= 2
        self.middle_block = UNetBlock(
            [
                TimestepResBlock(channels, emb, channels, config.use_scale_shift_norm),
                self._transformer(channels),
                TimestepResBlock(channels, emb, channels, config.use_scale_shift_norm),
            ]
        )
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            self.output_blocks.append(AudioConcat())
            channels += config.audio_channels[level]
            for index in range(config.num_res_blocks + 1):
                layers = [
                    TimestepResBlock(
                        channels + skip_channels.pop(), emb, mc * mult, config.use_scale_shift_norm
                    )
                ]
                channels = mc * mult
                if factor in config.attention_resolutions:
                    layers.append(self._transformer(channels))
                if config.s4_layer and index != config.num_res_blocks:
                    layers.append(S4Layer(channels))
                if level and index == config.num_res_blocks:
                    layers.append(Upsample(channels))
                    factor //= 2
                self.output_blocks.append(UNetBlock(layers))
        self.out = nn.Sequential(
            group_norm(channels), nn.SiLU(), nn.Conv1d(channels, config.out_channels, 3, padding=1)
        )

    def _transformer(self, channels: int) -> ContextualTransformer:
        heads, dim_head = self.config.heads(channels)
        return ContextualTransformer(
            channels, heads, dim_head, self.config.transformer_depth, self.config.context_dim
        )

    def layer_lengths(self, length: int) -> dict[nn.Module, int]:
        """The sequence length each S4 layer and transformer sees for latents of `length`."""
        lengths: dict[nn.Module, int] = {}
        current = length
        for block in self.input_blocks:
            for layer in block.children() if isinstance(block, UNetBlock) else ():
                if isinstance(layer, Downsample):
                    current //= 2
                lengths[layer] = current
        for layer in self.middle_block:
            lengths[layer] = current
        for block in self.output_blocks:
            for layer in block.children() if isinstance(block, UNetBlock) else ():
                lengths[layer] = current
                if isinstance(layer, Upsample):
                    current *= 2
        return lengths

    def plan(self, length: int, context_tokens: int) -> UNetPlan:
        """Everything that depends only on the latent length: computed once, reused every step."""
        plan = UNetPlan()
        for layer, layer_length in self.layer_lengths(length).items():
            if isinstance(layer, S4Layer):
                plan.spectra[layer] = layer.kernel_spectrum(layer_length)
            elif isinstance(layer, ContextualTransformer):
                plan.terms[layer] = layer.position_terms(layer_length, context_tokens)
        return plan

    def _run(
        self,
        block: UNetBlock,
        h: torch.Tensor,
        emb: torch.Tensor,
        context: torch.Tensor,
        plan: UNetPlan | None,
    ) -> torch.Tensor:
        for layer in block:
            if isinstance(layer, TimestepResBlock):
                h = layer(h, emb)
            elif isinstance(layer, ContextualTransformer):
                h = layer(h, context, None if plan is None else plan.terms[layer])
            elif isinstance(layer, S4Layer):
                h = layer(h, None if plan is None else plan.spectra[layer])
            else:
                h = layer(h)
        return h

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        context: torch.Tensor,
        audio: list[torch.Tensor],
        plan: UNetPlan | None = None,
    ) -> torch.Tensor:
        """x [batch, in_channels, L], timesteps [batch] int64 (or [1], shared by every row), context
        [batch, tokens, context_dim],
        audio: one feature map per level, finest first ([batch, audio_channels[i], L / 2^i]).
        `plan` is `self.plan(L, tokens)`; without it the per-length constants are recomputed."""
        emb = self.time_embed(timestep_embedding(timesteps, self.config.model_channels))
        saved = []
        level = 0
        h = x
        for block in self.input_blocks:
            if isinstance(block, AudioConcat):
                h = torch.cat([h, audio[level]], dim=1)
                level += 1
            else:
                h = self._run(block, h, emb, context, plan)
                saved.append(h)
        h = self._run(self.middle_block, h, emb, context, plan)
        for block in self.output_blocks:
            if isinstance(block, AudioConcat):
                level -= 1
                h = torch.cat([h, audio[level]], dim=1)
            else:
                h = self._run(block, torch.cat([h, saved.pop()], dim=1), emb, context, plan)
        return self.out(h)
