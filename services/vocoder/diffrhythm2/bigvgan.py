"""The BigVGAN-v2 generator that DiffRhythm 2 uses as its decoder: 64-channel 5 Hz latents to 48 kHz audio.

One architecture in one file: the config read from `decoder.json`, the SnakeBeta activation with
log-scale parameters, the alias-free activation (2x kaiser-sinc upsample, activation, 2x low-pass
downsample; both filters are state-dict buffers), the AMPBlock1 residual block and the generator.
Convolutions are plain (weight norm already fused by the loader), so the module's state-dict keys
are the published ones with `weight` in place of each `weight_g`/`weight_v` pair.
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional

ALIAS_FREE_RATIO = 2
ALIAS_FREE_TAPS = 12
SNAKE_EPSILON = 1e-9


@dataclass(frozen=True)
class DecoderConfig:
    """The decoder hyperparameters that shape the network (the rest of decoder.json is training-side)."""

    in_channels: int
    upsample_rates: tuple[int, ...]
    upsample_kernel_sizes: tuple[int, ...]
    upsample_initial_channel: int
    resblock_kernel_sizes: tuple[int, ...]
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]
    sampling_rate: int
    fps: int
    resblock: str = "1"
    activation: str = "snakebeta"
    snake_logscale: bool = True
    use_tanh_at_final: bool = True
    use_bias_at_final: bool = True

    def __post_init__(self) -> None:
        if self.resblock != "1":
            raise ValueError(f'decoder.json: resblock {self.resblock!r} is not supported (only "1")')
        if self.activation != "snakebeta":
            raise ValueError(f"decoder.json: activation {self.activation!r} is not supported")
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ValueError("decoder.json: upsample_rates and upsample_kernel_sizes differ in length")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ValueError("decoder.json: resblock kernel and dilation lists differ in length")
        if self.upsample_initial_channel % (2 ** len(self.upsample_rates)):
            raise ValueError("decoder.json: upsample_initial_channel must halve cleanly at every stage")
        if self.sampling_rate % self.fps or self.samples_per_frame != self.sampling_rate // self.fps:
            raise ValueError(
                f"decoder.json: upsample rates multiply to {self.samples_per_frame}, "
                f"but sampling_rate / fps is {self.sampling_rate / self.fps:g}"
            )

    @property
    def samples_per_frame(self) -> int:
        """Audio samples produced per latent frame (the product of the upsample rates)."""
        return math.prod(self.upsample_rates)

    @classmethod
    def from_dict(cls, raw: dict) -> DecoderConfig:
        """Build the config from the decoder.json dict, ignoring the training-only keys."""
        known = {spec.name for spec in fields(cls)}
        required = {spec.name for spec in fields(cls) if spec.default is MISSING}
        absent = sorted(required - raw.keys())
        if absent:
            raise ValueError(f"decoder.json lacks required keys: {', '.join(absent)}")
        values = {key: value for key, value in raw.items() if key in known}
        for key in ("upsample_rates", "upsample_kernel_sizes", "resblock_kernel_sizes"):
            values[key] = tuple(int(v) for v in values[key])
        dilations = values["resblock_dilation_sizes"]
        values["resblock_dilation_sizes"] = tuple(tuple(int(d) for d in row) for row in dilations)
        values["resblock"] = str(values.get("resblock", "1"))
        return cls(**values)

    @classmethod
    def from_json(cls, path: Path) -> DecoderConfig:
        """Read decoder.json."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def kaiser_sinc_filter(cutoff: float, half_width: float, taps: int) -> torch.Tensor:
    """A kaiser-windowed sinc low-pass filter of `taps` taps, normalised to unit DC gain, shape [1, 1, taps].

    `cutoff` and `half_width` are fractions of the sample rate; the Kaiser beta follows the usual
    attenuation formula for the transition band 4 * half_width.
    """
    half = taps // 2
    attenuation = 2.285 * (half - 1) * math.pi * (4 * half_width) + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(taps, periodic=False, beta=beta)
    time = torch.arange(-half, half) + 0.5 if taps % 2 == 0 else torch.arange(taps) - half
    response = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
    return (response / response.sum()).view(1, 1, taps)


class SnakeBeta(nn.Module):
    """x + sin^2(alpha x) / beta per channel; alpha and beta are stored as logarithms when `logscale`."""

    def __init__(self, channels: int, logscale: bool) -> None:
        super().__init__()
        self.logscale = logscale
        self.alpha = nn.Parameter(torch.zeros(channels) if logscale else torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels) if logscale else torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the activation to [batch, channels, time]."""
        alpha = self.alpha[None, :, None]
        beta = self.beta[None, :, None]
        if self.logscale:
            alpha = torch.exp(alpha)
            beta = torch.exp(beta)
        return x + (1.0 / (beta + SNAKE_EPSILON)) * torch.sin(x * alpha).pow(2)


class UpsampleBy2(nn.Module):
    """2x upsampling by zero-stuffing and kaiser-sinc interpolation, edges extended by replication."""

    def __init__(self) -> None:
        super().__init__()
        ratio, taps = ALIAS_FREE_RATIO, ALIAS_FREE_TAPS
        self.edge = taps // ratio - 1
        self.crop_left = self.edge * ratio + (taps - ratio) // 2
        self.crop_right = self.edge * ratio + (taps - ratio + 1) // 2
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / ratio, 0.6 / ratio, taps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[batch, channels, time] to [batch, channels, 2 * time]."""
        channels = x.shape[1]
        x = functional.pad(x, (self.edge, self.edge), mode="replicate")
        x = ALIAS_FREE_RATIO * functional.conv_transpose1d(
            x, self.filter.expand(channels, -1, -1), stride=ALIAS_FREE_RATIO, groups=channels
        )
        return x[..., self.crop_left : x.shape[-1] - self.crop_right]


class LowPass(nn.Module):
    """Kaiser-sinc low-pass filter with stride 2 (the decimating half of the alias-free activation)."""

    def __init__(self) -> None:
        super().__init__()
        ratio, taps = ALIAS_FREE_RATIO, ALIAS_FREE_TAPS
        self.pad_left = taps // 2 - (1 if taps % 2 == 0 else 0)
        self.pad_right = taps // 2
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / ratio, 0.6 / ratio, taps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[batch, channels, time] to [batch, channels, time / 2]."""
        channels = x.shape[1]
        x = functional.pad(x, (self.pad_left, self.pad_right), mode="replicate")
        return functional.conv1d(
            x, self.filter.expand(channels, -1, -1), stride=ALIAS_FREE_RATIO, groups=channels
        )


class DownsampleBy2(nn.Module):
    """Holds the low-pass under the name `lowpass`, as the published state dict expects."""

    def __init__(self) -> None:
        super().__init__()
        self.lowpass = LowPass()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[batch, channels, time] to [batch, channels, time / 2]."""
        return self.lowpass(x)


class AliasFreeSnakeBeta(nn.Module):
    """SnakeBeta run at twice the sample rate, so its harmonics are filtered out before decimation."""

    def __init__(self, channels: int, logscale: bool) -> None:
        super().__init__()
        self.act = SnakeBeta(channels, logscale)
        self.upsample = UpsampleBy2()
        self.downsample = DownsampleBy2()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape in and out."""
        return self.downsample(self.act(self.upsample(x)))


def _same_padding(kernel_size: int, dilation: int) -> int:
    return (kernel_size * dilation - dilation) // 2


class AMPBlock1(nn.Module):
    """Residual block: per dilation, activation, dilated conv, activation, plain conv, then add."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...], logscale: bool) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_same_padding(kernel_size, d))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=_same_padding(kernel_size, 1))
            for _ in dilations
        )
        self.activations = nn.ModuleList(
            AliasFreeSnakeBeta(channels, logscale) for _ in range(2 * len(dilations))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape in and out."""
        for index, (dilated, plain) in enumerate(zip(self.convs1, self.convs2, strict=True)):
            residual = dilated(self.activations[2 * index](x))
            x = x + plain(self.activations[2 * index + 1](residual))
        return x


class BigVGANGenerator(nn.Module):
    """Latents [batch, in_channels, frames] to audio [batch, 1, frames * samples_per_frame] in [-1, 1]."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
        width = config.upsample_initial_channel
        self.conv_pre = nn.Conv1d(config.in_channels, width, 7, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        upsamplers = zip(config.upsample_rates, config.upsample_kernel_sizes, strict=True)
        branches = list(zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes, strict=True))
        for stage, (rate, kernel) in enumerate(upsamplers):
            channels_in, channels_out = width // 2**stage, width // 2 ** (stage + 1)
            upsample = nn.ConvTranspose1d(
                channels_in, channels_out, kernel, rate, padding=(kernel - rate) // 2
            )
            self.ups.append(nn.ModuleList([upsample]))
            for kernel_size, dilations in branches:
                self.resblocks.append(AMPBlock1(channels_out, kernel_size, dilations, config.snake_logscale))
        final_channels = width // 2 ** len(config.upsample_rates)
        self.activation_post = AliasFreeSnakeBeta(final_channels, config.snake_logscale)
        self.conv_post = nn.Conv1d(final_channels, 1, 7, padding=3, bias=config.use_bias_at_final)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """Decode one window of latents; the output length is exactly frames * samples_per_frame."""
        x = self.conv_pre(latents)
        branches = len(self.config.resblock_kernel_sizes)
        for stage, upsample in enumerate(self.ups):
            x = upsample[0](x)
            blocks = self.resblocks[stage * branches : (stage + 1) * branches]
            total = blocks[0](x)
            for block in blocks[1:]:
                total = total + block(x)
            x = total / branches
        x = self.conv_post(self.activation_post(x))
        if self.config.use_tanh_at_final:
            return torch.tanh(x)
        return torch.clamp(x, -1.0, 1.0)
