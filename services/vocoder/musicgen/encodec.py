"""EnCodec (the 32 kHz codec of MusicGen): SEANet encoder and decoder with a residual vector quantizer.

Decoder: codes -> sum of the K codebook embeddings -> conv (kernel 7) -> 2-layer LSTM with a skip ->
for each upsampling ratio r: ELU, transposed conv (kernel 2r, stride r), residual blocks -> ELU ->
conv (kernel 7) -> audio. Convolutions are non-causal with reflect padding, and a stride's leftover is
padded so the output is exactly frames x prod(ratios) samples. The encoder mirrors it (strided convs,
LSTM, conv to the codebook width) and the quantizer picks, level after level, the nearest codebook
entry to what the previous levels left.

Weights load from the `audio_encoder.*` keys of the MusicGen checkpoint, strictly. Convolutions are
stored in weight-norm form, either as `weight_g` / `weight_v` (the Hub files) or as
`parametrizations.weight.original0` / `original1` (what transformers 5 writes); both are fused into a
plain weight w = g * v / ||v|| (norm over every dimension but the first) when loading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional

from services.runtime.hub_checkpoint import CheckpointError, check_keys, read_tensors
from services.runtime.model_files import read_json

PREFIX = "audio_encoder."
WEIGHT_NORM_FORMS = (
    ("weight_g", "weight_v"),
    ("parametrizations.weight.original0", "parametrizations.weight.original1"),
)
# Quantizer statistics from training that the checkpoint carries; decoding reads only `embed`.
UNUSED_CODEBOOK_BUFFERS = ("embed_avg", "cluster_size", "inited")


@dataclass(frozen=True)
class EncodecConfig:
    """EnCodec's hyperparameters (the `audio_encoder` section of a MusicGen `config.json`)."""

    audio_channels: int
    num_filters: int
    upsampling_ratios: tuple[int, ...]
    hidden_size: int
    codebook_size: int
    codebook_dim: int
    num_quantizers: int
    kernel_size: int
    last_kernel_size: int
    residual_kernel_size: int
    dilation_growth_rate: int
    num_residual_layers: int
    num_lstm_layers: int
    compress: int
    causal: bool
    pad_mode: str
    use_conv_shortcut: bool
    sampling_rate: int

    @classmethod
    def from_dict(cls, section: dict) -> EncodecConfig:
        """Parse the `audio_encoder` section; ValueError for what this implementation does not run
        (time-group norm, input normalisation, chunked encoding: none of MusicGen's codecs use them)."""
        try:
            if section.get("norm_type", "weight_norm") != "weight_norm":
                raise ValueError(f"norm_type {section['norm_type']!r} is not supported (only weight_norm)")
            if section.get("normalize"):
                raise ValueError("EnCodec with normalize=true is not supported (MusicGen's codec has false)")
            if section.get("chunk_length_s") is not None:
                raise ValueError(
                    "chunked EnCodec is not supported (MusicGen's codec has chunk_length_s null)"
                )
            ratios = tuple(int(r) for r in section["upsampling_ratios"])
            size = int(section["codebook_size"])
            rate = int(section["sampling_rate"])
            frame_rate = math.ceil(rate / math.prod(ratios))
            bandwidth = max(float(b) for b in section["target_bandwidths"])
            hidden = int(section["hidden_size"])
            return cls(
                audio_channels=int(section.get("audio_channels", 1)),
                num_filters=int(section["num_filters"]),
                upsampling_ratios=ratios,
                hidden_size=hidden,
                codebook_size=size,
                codebook_dim=int(section.get("codebook_dim") or hidden),
                num_quantizers=int(1000 * bandwidth // (frame_rate * int(math.log2(size)))),
                kernel_size=int(section.get("kernel_size", 7)),
                last_kernel_size=int(section.get("last_kernel_size", 7)),
                residual_kernel_size=int(section.get("residual_kernel_size", 3)),
                dilation_growth_rate=int(section.get("dilation_growth_rate", 2)),
                num_residual_layers=int(section.get("num_residual_layers", 1)),
                num_lstm_layers=int(section.get("num_lstm_layers", 2)),
                compress=int(section.get("compress", 2)),
                causal=bool(section.get("use_causal_conv", False)),
                pad_mode=str(section.get("pad_mode", "reflect")),
                use_conv_shortcut=bool(section.get("use_conv_shortcut", False)),
                sampling_rate=rate,
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"the audio_encoder config lacks a setting: {exc}") from exc

    @property
    def samples_per_frame(self) -> int:
        """Audio samples per code frame (640 for the 32 kHz codec)."""
        return math.prod(self.upsampling_ratios)


def pad1d(states: torch.Tensor, left: int, right: int, mode: str) -> torch.Tensor:
    """Pad the last dimension; reflect padding of a signal shorter than the pad gets zeros first (as
    EnCodec does), so any length works."""
    if mode != "reflect":
        return functional.pad(states, (left, right), mode)
    length = states.shape[-1]
    extra = max(left, right) - length + 1 if length <= max(left, right) else 0
    if extra:
        states = functional.pad(states, (0, extra))
    padded = functional.pad(states, (left, right), mode)
    return padded[..., : padded.shape[-1] - extra]


class PaddedConv1d(nn.Module):
    """Conv1d padded like EnCodec's: the kernel's reach split around each sample (more on the left when
    odd; all on the left when causal), plus right padding so the last stride is complete."""

    def __init__(
        self,
        config: EncodecConfig,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int = 1,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, stride, dilation=dilation)
        self.causal = config.causal
        self.pad_mode = config.pad_mode
        self.stride = stride
        self.kernel = (kernel - 1) * dilation + 1
        self.padding_total = self.kernel - stride

    def reach(self) -> tuple[int, int]:
        """Input samples before and after an output sample that it reads (stride 1)."""
        if self.causal:
            return self.padding_total, 0
        return self.padding_total - self.padding_total // 2, self.padding_total // 2

    def padding(self, length: int) -> tuple[int, int]:
        """Left and right padding for an input of `length` samples."""
        frames = math.ceil((length - self.kernel + self.padding_total) / self.stride + 1) - 1
        extra = frames * self.stride + self.kernel - self.padding_total - length
        left, right = self.reach()
        return left, right + extra

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """[batch, channels, n] -> [batch, out_channels, ceil(n / stride)]."""
        left, right = self.padding(states.shape[-1])
        return self.conv(pad1d(states, left, right, self.pad_mode))


class TrimmedConvTranspose1d(nn.Module):
    """ConvTranspose1d whose output loses kernel - stride samples (split like the conv's padding), so
    n inputs give n x stride outputs."""

    def __init__(
        self, config: EncodecConfig, in_channels: int, out_channels: int, kernel: int, stride: int
    ) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose1d(in_channels, out_channels, kernel, stride)
        total = kernel - stride
        self.trim_right = total if config.causal else total // 2
        self.trim_left = total - self.trim_right

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """[batch, channels, n] -> [batch, out_channels, n * stride]."""
        states = self.conv(states)
        return states[..., self.trim_left : states.shape[-1] - self.trim_right]


class Lstm(nn.Module):
    """LSTM over time with a skip connection, on convolutional layout [batch, channels, n]; the state
    can be carried from one call to the next (a streaming decode continues exactly)."""

    def __init__(self, config: EncodecConfig, width: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(width, width, config.num_lstm_layers)

    def forward(
        self, states: torch.Tensor, memory: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The output [batch, channels, n] and the LSTM state after the last frame."""
        sequence = states.permute(2, 0, 1)
        output, memory = self.lstm(sequence, memory)
        return (output + sequence).permute(1, 2, 0), memory


class ResidualBlock(nn.Module):
    """SEANet residual block: ELU, dilated conv to dim / compress, ELU, 1x1 conv back, plus the input."""

    def __init__(self, config: EncodecConfig, width: int, dilation: int) -> None:
        super().__init__()
        hidden = width // config.compress
        self.block = nn.ModuleList(
            [
                nn.ELU(),
                PaddedConv1d(config, width, hidden, config.residual_kernel_size, dilation=dilation),
                nn.ELU(),
                PaddedConv1d(config, hidden, width, 1),
            ]
        )
        self.shortcut = PaddedConv1d(config, width, width, 1) if config.use_conv_shortcut else nn.Identity()

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """Same shape in and out."""
        residual = states
        for layer in self.block:
            states = layer(states)
        return self.shortcut(residual) + states


class Encoder(nn.Module):
    """Audio [batch, channels, samples] -> latents [batch, hidden, ceil(samples / samples_per_frame)]."""

    def __init__(self, config: EncodecConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            PaddedConv1d(config, config.audio_channels, config.num_filters, config.kernel_size)
        ]
        scale = 1
        for ratio in reversed(config.upsampling_ratios):
            width = scale * config.num_filters
            layers += [
                ResidualBlock(config, width, config.dilation_growth_rate**j)
                for j in range(config.num_residual_layers)
            ]
            layers += [nn.ELU(), PaddedConv1d(config, width, width * 2, ratio * 2, stride=ratio)]
            scale *= 2
        layers += [Lstm(config, scale * config.num_filters), nn.ELU()]
        layers += [
            PaddedConv1d(config, scale * config.num_filters, config.hidden_size, config.last_kernel_size)
        ]
        self.layers = nn.ModuleList(layers)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Encode a whole recording."""
        states = audio
        for layer in self.layers:
            states = layer(states)[0] if isinstance(layer, Lstm) else layer(states)
        return states


class Decoder(nn.Module):
    """Latents [batch, hidden, frames] -> audio [batch, channels, frames * samples_per_frame].

    `layers[0]` (the input conv) and `layers[1]` (the LSTM) run at the frame rate; `layers[2:]` (the
    upsampling stack) see a few frames around each output frame (see `upsampling_reach`)."""

    def __init__(self, config: EncodecConfig) -> None:
        super().__init__()
        scale = 2 ** len(config.upsampling_ratios)
        layers: list[nn.Module] = [
            PaddedConv1d(config, config.hidden_size, scale * config.num_filters, config.kernel_size),
            Lstm(config, scale * config.num_filters),
        ]
        for ratio in config.upsampling_ratios:
            width = scale * config.num_filters
            layers += [nn.ELU(), TrimmedConvTranspose1d(config, width, width // 2, ratio * 2, ratio)]
            layers += [
                ResidualBlock(config, width // 2, config.dilation_growth_rate**j)
                for j in range(config.num_residual_layers)
            ]
            scale //= 2
        layers += [
            nn.ELU(),
            PaddedConv1d(config, config.num_filters, config.audio_channels, config.last_kernel_size),
        ]
        self.layers = nn.ModuleList(layers)

    @property
    def input_conv(self) -> PaddedConv1d:
        """The frame-rate conv in front of the LSTM."""
        return self.layers[0]

    @property
    def lstm(self) -> Lstm:
        """The frame-rate LSTM."""
        return self.layers[1]

    def upsample(self, states: torch.Tensor) -> torch.Tensor:
        """The upsampling stack: LSTM output [batch, width, n] -> audio [batch, channels, n * spf]."""
        for layer in self.layers[2:]:
            states = layer(states)
        return states

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """Decode a whole song."""
        states, _ = self.lstm(self.input_conv(latents))
        return self.upsample(states)


def upsampling_reach(decoder: Decoder, samples_per_frame: int) -> tuple[int, int]:
    """How many LSTM-output frames before and after a frame the upsampling stack reads to make that
    frame's audio (1 and 1 for MusicGen's codec): audio frame f equals the one-shot decode whenever a
    window of LSTM outputs holds frames f - left .. f + right away from its padded edges.

    Walks the stack backwards, widening the interval of samples that one output frame needs.
    """
    low, high = 0, samples_per_frame - 1
    for layer in reversed(list(decoder.layers[2:])):
        convs = [layer] if isinstance(layer, PaddedConv1d) else []
        if isinstance(layer, ResidualBlock):
            convs = [layer.block[1], layer.block[3]]
        for conv in convs:
            left, right = conv.reach()
            low, high = low - left, high + right
        if isinstance(layer, TrimmedConvTranspose1d):
            kernel, stride = layer.conv.kernel_size[0], layer.conv.stride[0]
            low = math.ceil((low + layer.trim_left - kernel + 1) / stride)
            high = (high + layer.trim_left) // stride
    return -low, high


class Quantizer(nn.Module):
    """Residual vector quantizer: `layers[i].codebook.embed` [codebook_size, codebook_dim] per level."""

    def __init__(self, config: EncodecConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_Level(config) for _ in range(config.num_quantizers))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [batch, levels, frames] -> latents [batch, dim, frames] (the levels' entries summed)."""
        total = None
        for level in range(codes.shape[1]):
            entries = functional.embedding(codes[:, level], self.layers[level].codebook.embed)
            total = entries if total is None else total + entries
        return total.transpose(1, 2)

    def encode(self, latents: torch.Tensor, levels: int) -> torch.Tensor:
        """Latents [batch, dim, frames] -> codes [batch, levels, frames]: each level takes the entry
        nearest (Euclidean) to what the levels before it left."""
        residual = latents.transpose(1, 2)
        chosen = []
        for layer in self.layers[:levels]:
            embed = layer.codebook.embed
            flat = residual.reshape(-1, residual.shape[-1])
            distance = -(
                flat.pow(2).sum(1, keepdim=True)
                - 2 * flat @ embed.t()
                + embed.t().pow(2).sum(0, keepdim=True)
            )
            indices = distance.max(dim=-1).indices.view(residual.shape[:-1])
            residual = residual - functional.embedding(indices, embed)
            chosen.append(indices)
        return torch.stack(chosen, dim=1)


class _Codebook(nn.Module):
    def __init__(self, config: EncodecConfig) -> None:
        super().__init__()
        self.embed = nn.Parameter(torch.zeros(config.codebook_size, config.codebook_dim), requires_grad=False)


class _Level(nn.Module):
    def __init__(self, config: EncodecConfig) -> None:
        super().__init__()
        self.codebook = _Codebook(config)


class Encodec(nn.Module):
    """The codec: `encoder`, `decoder` and `quantizer`, named as in the checkpoint."""

    def __init__(self, config: EncodecConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quantizer = Quantizer(config)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [batch, levels, frames] -> audio [batch, channels, frames * samples_per_frame]."""
        return self.decoder(self.quantizer.decode(codes))

    def encode(self, audio: torch.Tensor, levels: int) -> torch.Tensor:
        """Audio [batch, channels, samples] at the codec's rate -> codes [batch, levels, frames]
        (frames = samples / samples_per_frame, rounded up)."""
        return self.quantizer.encode(self.encoder(audio), levels)


def _conv_weight_names(model: nn.Module) -> set[str]:
    """Names of the conv weights the checkpoint stores in weight-norm form."""
    return {
        f"{name}.weight"
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d))
    }


def fuse_weight_norm(tensors: dict[str, torch.Tensor], weights: set[str]) -> dict[str, torch.Tensor]:
    """Replace every weight-norm pair (either naming) of the weights in `weights` by the plain weight
    g * v / ||v||; a weight with neither form is left missing for the strict check to report."""
    fused = dict(tensors)
    for weight in weights:
        stem = weight[: -len("weight")]
        for magnitude, direction in WEIGHT_NORM_FORMS:
            if stem + magnitude in fused and stem + direction in fused:
                g, v = fused.pop(stem + magnitude), fused.pop(stem + direction)
                norm = v.norm(dim=tuple(range(1, v.dim())), keepdim=True)
                fused[weight] = v * (g / norm)
    return fused


def load_encodec(model_dir: Path, device: str = "cpu") -> Encodec:
    """Build EnCodec from `config.json`'s audio_encoder section and load `audio_encoder.*` strictly
    (CheckpointError names what is missing, unexpected or misshapen); eval mode, no gradients."""
    config_json = read_json(model_dir, "config.json")
    if config_json is None or "audio_encoder" not in config_json:
        raise CheckpointError(f"no config.json with an audio_encoder section in {model_dir}")
    try:
        config = EncodecConfig.from_dict(config_json["audio_encoder"])
    except ValueError as exc:
        raise CheckpointError(f"{model_dir}/config.json: {exc}") from exc
    model = Encodec(config)
    tensors = {key[len(PREFIX) :]: value for key, value in read_tensors(model_dir, (PREFIX,)).items()}
    for level in range(config.num_quantizers):
        for buffer in UNUSED_CODEBOOK_BUFFERS:
            tensors.pop(f"quantizer.layers.{level}.codebook.{buffer}", None)
    tensors = fuse_weight_norm(tensors, _conv_weight_names(model))
    expected = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    check_keys(
        {PREFIX + name: shape for name, shape in expected.items()},
        {PREFIX + name: value for name, value in tensors.items()},
        "EnCodec",
    )
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval().requires_grad_(False)
