"""The Oobleck VAE of DiffRhythm v1 (Stable Audio Open's autoencoder) as plain modules.

Decoder: latents [B, 64, T] -> conv 7 to 16C channels -> five up-sampling blocks (strides 8, 8, 4,
4, 2, each SnakeBeta + transposed conv + three dilated residual units) -> SnakeBeta -> conv 7 to 2
channels, no bias, no tanh: audio [B, 2, T * 2048] at 44.1 kHz. Encoder: the mirror image, audio
[B, 2, n] -> [B, 128, n / 2048], 64 means then 64 scales. C is 128 in the published model.

Module and parameter names are those of the published TorchScript archive (`encoder.layers.*`,
`decoder.layers.*`, SnakeBeta `alpha`/`beta` in log scale, plain conv weights), so its state dict
loads into `OobleckVae` strictly. The modules are scriptable: `ScriptedVae` is what the demo model
writes as its `vae_model.pt`, with the archive's `decode_export` / `encode_export` methods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

LATENT_DIM = 64
AUDIO_CHANNELS = 2
STRIDES = (2, 4, 4, 8, 8)
MULTIPLIERS = (1, 2, 4, 8, 16)
DILATIONS = (1, 3, 9)
SAMPLES_PER_FRAME = math.prod(STRIDES)


@dataclass(frozen=True)
class OobleckConfig:
    """The VAE's width: `channels` at the audio end (128 published), 16x that at the latent end."""

    channels: int = 128


class SnakeBeta(nn.Module):
    """x + 1 / (exp(beta) + 1e-9) * sin(exp(alpha) * x)^2, per channel (log-scale parameters)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, channels, n]."""
        alpha = torch.exp(self.alpha.unsqueeze(0).unsqueeze(-1))
        beta = torch.exp(self.beta.unsqueeze(0).unsqueeze(-1))
        return x + (1.0 / (beta + 1e-9)) * torch.sin(x * alpha).pow(2)


class ResidualUnit(nn.Module):
    """x + conv1(snake(conv7 dilated(snake(x))))."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            SnakeBeta(channels),
            nn.Conv1d(channels, channels, 7, dilation=dilation, padding=3 * dilation),
            SnakeBeta(channels),
            nn.Conv1d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same length in and out."""
        return self.layers(x) + x


class EncoderBlock(nn.Module):
    """Three residual units, SnakeBeta, then a strided conv down by `stride`."""

    def __init__(self, channels_in: int, channels_out: int, stride: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *(ResidualUnit(channels_in, dilation) for dilation in DILATIONS),
            SnakeBeta(channels_in),
            nn.Conv1d(channels_in, channels_out, 2 * stride, stride=stride, padding=math.ceil(stride / 2)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """n samples in, n // stride out."""
        return self.layers(x)


class DecoderBlock(nn.Module):
    """SnakeBeta, a transposed conv up by `stride`, then three residual units."""

    def __init__(self, channels_in: int, channels_out: int, stride: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            SnakeBeta(channels_in),
            nn.ConvTranspose1d(
                channels_in, channels_out, 2 * stride, stride=stride, padding=math.ceil(stride / 2)
            ),
            *(ResidualUnit(channels_out, dilation) for dilation in DILATIONS),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """n frames in, n * stride out."""
        return self.layers(x)


class OobleckEncoder(nn.Module):
    """Stereo audio [B, 2, n] to the VAE's mean | scale [B, 128, n // 2048]."""

    def __init__(self, config: OobleckConfig) -> None:
        super().__init__()
        widths = [config.channels * multiplier for multiplier in (1, *MULTIPLIERS)]
        self.layers = nn.Sequential(
            nn.Conv1d(AUDIO_CHANNELS, widths[0], 7, padding=3),
            *(EncoderBlock(widths[i], widths[i + 1], stride) for i, stride in enumerate(STRIDES)),
            SnakeBeta(widths[-1]),
            nn.Conv1d(widths[-1], 2 * LATENT_DIM, 3, padding=1),
        )

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Encode audio."""
        return self.layers(audio)


class OobleckDecoder(nn.Module):
    """Latents [B, 64, T] to stereo audio [B, 2, T * 2048]."""

    def __init__(self, config: OobleckConfig) -> None:
        super().__init__()
        widths = [config.channels * multiplier for multiplier in (1, *MULTIPLIERS)][::-1]
        self.layers = nn.Sequential(
            nn.Conv1d(LATENT_DIM, widths[0], 7, padding=3),
            *(DecoderBlock(widths[i], widths[i + 1], stride) for i, stride in enumerate(STRIDES[::-1])),
            SnakeBeta(widths[-1]),
            nn.Conv1d(widths[-1], AUDIO_CHANNELS, 7, padding=3, bias=False),
            nn.Identity(),
        )

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """Decode latents."""
        return self.layers(latents)


class OobleckVae(nn.Module):
    """The encoder and the decoder, named as in the published archive."""

    def __init__(self, config: OobleckConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = OobleckEncoder(config)
        self.decoder = OobleckDecoder(config)


class ScriptedVae(nn.Module):
    """What a `vae_model.pt` archive scripts: `decode_export` and `encode_export` over our modules."""

    def __init__(self, vae: OobleckVae) -> None:
        super().__init__()
        self.encoder = vae.encoder
        self.decoder = vae.decoder

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """The decode, as the archive's forward."""
        return self.decoder(latents)

    @torch.jit.export
    def decode_export(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [B, 64, T] to audio [B, 2, T * 2048]."""
        return self.decoder(latents)

    @torch.jit.export
    def encode_export(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio [B, 2, n] to mean | scale [B, 128, n // 2048]."""
        return self.encoder(audio)
