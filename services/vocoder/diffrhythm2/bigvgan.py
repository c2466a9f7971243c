"""The BigVGAN-v2 generator that DiffRhythm 2 uses as its decoder: 64-channel 5 Hz latents to 48 kHz audio.

One architecture in one file: the config read from `decoder.json`, the Snake and SnakeBeta
activations (optionally with log-scale parameters), the alias-free activation (2x kaiser-sinc
upsample, activation, 2x low-pass downsample; both filters are state-dict buffers), the AMPBlock1
and AMPBlock2 residual blocks and the generator. Convolutions are plain (weight norm already fused by
the loader), so the module's state-dict keys are the published ones with `weight` in place of each
`weight_g`/`weight_v` pair.

Every config the reference BigVGAN builds is accepted, with its choices: channel counts are floored
(`upsample_initial_channel // 2**stage`, so a width that does not halve evenly still builds), extra
kernel sizes or dilation rows beyond the stages and branches that use them are ignored. What the
reference cannot build or run is refused with the offending field named.
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


RESBLOCKS = ("1", "2")
ACTIVATIONS = ("snake", "snakebeta")


def _positive(values: tuple[int, ...]) -> bool:
    return all(value > 0 for value in values)


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
    resblock: str = "1"
    activation: str = "snakebeta"
    snake_logscale: bool = True
    use_tanh_at_final: bool = True
    use_bias_at_final: bool = True

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise ValueError("decoder.json: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        """What keeps this config from building a network that runs, each naming its field."""
        problems = []
        if self.resblock not in RESBLOCKS:
            problems.append(f'resblock {self.resblock!r} is not a BigVGAN residual block ("1" or "2")')
        if self.activation not in ACTIVATIONS:
            problems.append(f"activation {self.activation!r} is not snake or snakebeta")
        if self.in_channels <= 0 or self.sampling_rate <= 0:
            problems.append("in_channels and sampling_rate must be positive")
        stages = len(self.upsample_rates)
        if stages == 0 or not _positive(self.upsample_rates):
            problems.append(
                f"upsample_rates {list(self.upsample_rates)} must list at least one positive rate"
            )
        kernels = self.upsample_kernel_sizes[:stages]
        if len(kernels) < stages:
            problems.append(
                f"upsample_kernel_sizes lists {len(kernels)} kernels for {stages} upsample stages"
            )
        for stage, (rate, kernel) in enumerate(zip(self.upsample_rates, kernels, strict=False)):
            if kernel < rate:
                problems.append(f"upsample_kernel_sizes[{stage}] is {kernel}, smaller than its rate {rate}")
        if self.upsample_initial_channel // 2**stages < 1:
            problems.append(
                f"upsample_initial_channel {self.upsample_initial_channel} leaves no channel after "
                f"{stages} upsample stages (it must be at least {2**stages})"
            )
        problems += self._resblock_problems()
        return problems

    def _resblock_problems(self) -> list[str]:
        branches = len(self.resblock_kernel_sizes)
        if branches == 0 or not _positive(self.resblock_kernel_sizes):
            return [f"resblock_kernel_sizes {list(self.resblock_kernel_sizes)} must list positive kernels"]
        rows = self.resblock_dilation_sizes[:branches]
        if len(rows) < branches:
            return [f"resblock_dilation_sizes lists {len(rows)} rows for {branches} resblock kernels"]
        problems = []
        for branch, (kernel, dilations) in enumerate(zip(self.resblock_kernel_sizes, rows, strict=True)):
            # A residual conv keeps the length only when dilation * (kernel - 1) is even.
            uses = dilations + (1,) * len(dilations) if self.resblock == "1" else dilations
            if not _positive(dilations):
                problems.append(f"resblock_dilation_sizes[{branch}] {list(dilations)} must be positive")
            elif any(dilation * (kernel - 1) % 2 for dilation in uses):
                problems.append(
                    f"resblock_kernel_sizes[{branch}] {kernel} with dilations {list(dilations)} changes the "
                    "signal length, so the residual sum cannot be formed (use an odd kernel)"
                )
        return problems

    @property
    def samples_per_frame(self) -> int:
        """Audio samples produced per latent frame (the product of the upsample rates)."""
        return math.prod(self.upsample_rates)

    def stage_channels(self, stage: int) -> int:
        """Channels after upsample stage `stage` (0-based), floored as the reference does."""
        return self.upsample_initial_channel // 2 ** (stage + 1)

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


def _log_scale_parameter(channels: int, logscale: bool) -> nn.Parameter:
    return nn.Parameter(torch.zeros(channels) if logscale else torch.ones(channels))


class Snake(nn.Module):
    """x + sin^2(alpha x) / alpha per channel; alpha is stored as a logarithm when `logscale`."""

    def __init__(self, channels: int, logscale: bool) -> None:
        super().__init__()
        self.logscale = logscale
        self.alpha = _log_scale_parameter(channels, logscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the activation to [batch, channels, time]."""
        alpha = self.alpha[None, :, None]
        if self.logscale:
            alpha = torch.exp(alpha)
        return x + (1.0 / (alpha + SNAKE_EPSILON)) * torch.sin(x * alpha).pow(2)


class SnakeBeta(nn.Module):
    """x + sin^2(alpha x) / beta per channel; alpha and beta are stored as logarithms when `logscale`."""

    def __init__(self, channels: int, logscale: bool) -> None:
        super().__init__()
        self.logscale = logscale
        self.alpha = _log_scale_parameter(channels, logscale)
        self.beta = _log_scale_parameter(channels, logscale)

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


class AliasFreeActivation(nn.Module):
    """Snake or SnakeBeta run at twice the sample rate, its harmonics filtered out before decimation."""

    def __init__(self, config: DecoderConfig, channels: int) -> None:
        super().__init__()
        activation = SnakeBeta if config.activation == "snakebeta" else Snake
        self.act = activation(channels, config.snake_logscale)
        self.upsample = UpsampleBy2()
        self.downsample = DownsampleBy2()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape in and out."""
        return self.downsample(self.act(self.upsample(x)))


def _same_padding(kernel_size: int, dilation: int) -> int:
    return (kernel_size * dilation - dilation) // 2


def _dilated_conv(channels: int, kernel_size: int, dilation: int) -> nn.Conv1d:
    return nn.Conv1d(
        channels, channels, kernel_size, dilation=dilation, padding=_same_padding(kernel_size, dilation)
    )


class AMPBlock1(nn.Module):
    """Residual block: per dilation, activation, dilated conv, activation, plain conv, then add."""

    def __init__(
        self, config: DecoderConfig, channels: int, kernel_size: int, dilations: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(_dilated_conv(channels, kernel_size, d) for d in dilations)
        self.convs2 = nn.ModuleList(_dilated_conv(channels, kernel_size, 1) for _ in dilations)
        self.activations = nn.ModuleList(
            AliasFreeActivation(config, channels) for _ in range(2 * len(dilations))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape in and out."""
        for index, (dilated, plain) in enumerate(zip(self.convs1, self.convs2, strict=True)):
            residual = dilated(self.activations[2 * index](x))
            x = x + plain(self.activations[2 * index + 1](residual))
        return x


class AMPBlock2(nn.Module):
    """Residual block without the plain convs: per dilation, activation, dilated conv, then add."""

    def __init__(
        self, config: DecoderConfig, channels: int, kernel_size: int, dilations: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.convs = nn.ModuleList(_dilated_conv(channels, kernel_size, d) for d in dilations)
        self.activations = nn.ModuleList(AliasFreeActivation(config, channels) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape in and out."""
        for conv, activation in zip(self.convs, self.activations, strict=True):
            x = x + conv(activation(x))
        return x


class BigVGANGenerator(nn.Module):
    """Latents [batch, in_channels, frames] to audio [batch, 1, samples] in [-1, 1]."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
        width = config.upsample_initial_channel
        block = AMPBlock1 if config.resblock == "1" else AMPBlock2
        self.conv_pre = nn.Conv1d(config.in_channels, width, 7, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        upsamplers = zip(config.upsample_rates, config.upsample_kernel_sizes, strict=False)
        branches = list(zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes, strict=False))
        for stage, (rate, kernel) in enumerate(upsamplers):
            channels_in, channels_out = width // 2**stage, config.stage_channels(stage)
            upsample = nn.ConvTranspose1d(
                channels_in, channels_out, kernel, rate, padding=(kernel - rate) // 2
            )
            self.ups.append(nn.ModuleList([upsample]))
            for kernel_size, dilations in branches:
                self.resblocks.append(block(config, channels_out, kernel_size, dilations))
        final_channels = config.stage_channels(len(config.upsample_rates) - 1)
        self.activation_post = AliasFreeActivation(config, final_channels)
        self.conv_post = nn.Conv1d(final_channels, 1, 7, padding=3, bias=config.use_bias_at_final)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """Decode one window of latents into frames * samples_per_frame samples (one more at the end
        for every upsample stage whose kernel and rate differ by an odd number, as in the reference)."""
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
