"""MuQ, the audio tower of MuQ-MuLan: mel front end, conv subsampling and a rotary conformer.

Module and parameter names follow the published checkpoint (`conv.conv.0.conv1.weight`,
`conformer.layers.3.self_attn.linear_q.bias`, ...), so the MuLan state dict loads without renaming.
Only the inference path exists here: MuQ's quantizer, prediction head, cls token and the conformer's
positional conv (never called by its forward) are left out; the loader knows they are unused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias
from torch import nn

from services.style.muq_mulan.mel import MelFrontEnd

MEL_FEATURE = "melspec_2048"
TIME_STRIDES = {4: (2, 2), 2: (2, 1)}


@dataclass(frozen=True)
class MuQConfig:
    """The parts of MuQ's `config.json` that shape inference."""

    hop_length: int
    n_mels: int
    conv_dim: int
    encoder_dim: int
    encoder_depth: int
    label_rate: int
    mel_mean: float
    mel_std: float
    attention_heads: int
    ffn_dim: int
    depthwise_kernel: int
    rotary_base: float
    layer_norm_eps: float

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MuQConfig:
        """Read MuQ's config.json dict (its `w2v2_config` holds the conformer settings)."""
        w2v2 = data.get("w2v2_config") or {}
        stat = data.get("stat") or {}
        for name in (f"{MEL_FEATURE}_mean", f"{MEL_FEATURE}_std"):
            if name not in stat:
                raise ValueError(f"MuQ config: stat.{name} is missing")
        if w2v2.get("position_embeddings_type", "rotary") != "rotary":
            raise ValueError("MuQ config: only rotary position embeddings are supported")
        if w2v2.get("hidden_act", "swish") not in ("swish", "silu"):
            raise ValueError(f"MuQ config: unsupported hidden_act {w2v2.get('hidden_act')!r}")
        if 100 // int(data.get("label_rate", 25)) not in TIME_STRIDES:
            raise ValueError("MuQ config: label_rate must be 25 or 50")
        if list(data.get("features", [MEL_FEATURE])) != [MEL_FEATURE]:
            raise ValueError(f"MuQ config: only the {MEL_FEATURE} feature is supported")
        return cls(
            hop_length=int(data.get("hop_length", 240)),
            n_mels=int(data.get("n_mels", 128)),
            conv_dim=int(data.get("conv_dim", 512)),
            encoder_dim=int(data.get("encoder_dim", 1024)),
            encoder_depth=int(data.get("encoder_depth", 12)),
            label_rate=int(data.get("label_rate", 25)),
            mel_mean=float(stat[f"{MEL_FEATURE}_mean"]),
            mel_std=float(stat[f"{MEL_FEATURE}_std"]),
            attention_heads=int(w2v2.get("num_attention_heads", 16)),
            ffn_dim=int(w2v2.get("intermediate_size", 4096)),
            depthwise_kernel=int(w2v2.get("conv_depthwise_kernel_size", 31)),
            rotary_base=float(w2v2.get("rotary_embedding_base", 10000)),
            layer_norm_eps=float(w2v2.get("layer_norm_eps", 1e-5)),
        )

    @property
    def time_strides(self) -> tuple[int, int]:
        """Time strides of the two residual conv blocks: 4x in all for 25 Hz labels, 2x for 50 Hz."""
        return TIME_STRIDES[100 // self.label_rate]


class ResidualConvBlock(nn.Module):
    """conv3x3+BN+ReLU, conv3x3+BN, plus a strided conv3x3+BN shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: tuple[int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, stride=stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv3 = nn.Conv2d(in_channels, out_channels, 3, padding=1, stride=stride)
        self.bn3 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, F, T] -> [B, C', F/2, T/stride]."""
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(self.bn3(self.conv3(x)) + out)


class ConvSubsampling(nn.Module):
    """Two residual conv blocks over the mel image, then a linear map of each frame's features."""

    def __init__(self, config: MuQConfig) -> None:
        super().__init__()
        first, second = config.time_strides
        self.conv = nn.Sequential(
            ResidualConvBlock(1, config.conv_dim, (2, first)),
            ResidualConvBlock(config.conv_dim, config.conv_dim, (2, second)),
        )
        self.linear = nn.Linear(config.conv_dim * (config.n_mels // 4), config.encoder_dim)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """Normalised mel [B, n_mels, T] -> frames [B, T', encoder_dim] (channel-major features)."""
        x = self.conv(mel.unsqueeze(1))
        batch, channels, freqs, frames = x.shape
        x = x.permute(0, 3, 1, 2).reshape(batch, frames, channels * freqs)
        return self.linear(x)


class RotaryEmbedding(nn.Module):
    """Rotary angles from `inv_freq`, a persistent buffer that the checkpoint supplies."""

    def __init__(self, head_dim: int, base: float) -> None:
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
        self.register_buffer("inv_freq", inv_freq)

    def forward(self, length: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin tables [length, 1, 1, head_dim], computed in inv_freq's dtype."""
        positions = torch.arange(length, device=self.inv_freq.device).type_as(self.inv_freq)
        freqs = positions[:, None] * self.inv_freq
        angles = torch.cat((freqs, freqs), dim=-1)[:, None, None, :]
        return angles.cos().to(dtype), angles.sin().to(dtype)


class FeedForward(nn.Module):
    """Linear, swish, linear (the conformer's macaron halves)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(dim, hidden)
        self.output_dense = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[..., dim] -> [..., dim]."""
        return self.output_dense(F.silu(self.intermediate_dense(x)))


class RotarySelfAttention(nn.Module):
    """Multi-head attention with rotary positions applied to the input of the q and k projections."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.linear_q = nn.Linear(dim, dim)
        self.linear_k = nn.Linear(dim, dim)
        self.linear_v = nn.Linear(dim, dim)
        self.linear_out = nn.Linear(dim, dim)

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        x = x.view(batch, length, self.heads, self.head_dim).transpose(0, 1)
        half = self.head_dim // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        x = x * cos + rotated * sin
        return x.transpose(0, 1).reshape(batch, length, dim)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """[B, T, dim] -> [B, T, dim], no mask (every clip is complete)."""
        batch, length, dim = x.shape
        rotated = self._rotate(x, cos, sin)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.heads, self.head_dim).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            heads(self.linear_q(rotated)), heads(self.linear_k(rotated)), heads(self.linear_v(x))
        )
        return self.linear_out(out.transpose(1, 2).reshape(batch, length, dim))


class ConvolutionModule(nn.Module):
    """LayerNorm, pointwise conv + GLU, depthwise conv, BatchNorm, swish, pointwise conv."""

    def __init__(self, dim: int, kernel: int) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(dim)
        self.pointwise_conv1 = nn.Conv1d(dim, 2 * dim, 1, bias=False)
        self.depthwise_conv = nn.Conv1d(dim, dim, kernel, padding=(kernel - 1) // 2, groups=dim, bias=False)
        self.batch_norm = nn.BatchNorm1d(dim)
        self.pointwise_conv2 = nn.Conv1d(dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, dim] -> [B, T, dim]."""
        x = self.layer_norm(x).transpose(1, 2)
        x = F.glu(self.pointwise_conv1(x), dim=1)
        x = F.silu(self.batch_norm(self.depthwise_conv(x)))
        return self.pointwise_conv2(x).transpose(1, 2)


class ConformerLayer(nn.Module):
    """Half FFN, rotary self-attention, convolution module, half FFN, final LayerNorm."""

    def __init__(self, config: MuQConfig) -> None:
        super().__init__()
        dim = config.encoder_dim
        self.ffn1_layer_norm = nn.LayerNorm(dim)
        self.ffn1 = FeedForward(dim, config.ffn_dim)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.self_attn = RotarySelfAttention(dim, config.attention_heads)
        self.conv_module = ConvolutionModule(dim, config.depthwise_kernel)
        self.ffn2_layer_norm = nn.LayerNorm(dim)
        self.ffn2 = FeedForward(dim, config.ffn_dim)
        self.final_layer_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """[B, T, dim] -> [B, T, dim]."""
        x = x + 0.5 * self.ffn1(self.ffn1_layer_norm(x))
        x = x + self.self_attn(self.self_attn_layer_norm(x), cos, sin)
        x = x + self.conv_module(x)
        x = x + 0.5 * self.ffn2(self.ffn2_layer_norm(x))
        return self.final_layer_norm(x)


class Conformer(nn.Module):
    """The wav2vec2-conformer encoder stack with a final LayerNorm."""

    def __init__(self, config: MuQConfig) -> None:
        super().__init__()
        head_dim = config.encoder_dim // config.attention_heads
        self.embed_positions = RotaryEmbedding(head_dim, config.rotary_base)
        self.layers = nn.ModuleList(ConformerLayer(config) for _ in range(config.encoder_depth))
        self.layer_norm = nn.LayerNorm(config.encoder_dim, eps=config.layer_norm_eps)

    def hidden_state(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """hidden_states[index] of the reference: the input of layer `index`, or for index == depth
        the final LayerNorm output. Layers past the requested one are not run."""
        cos, sin = self.embed_positions(x.shape[1], x.dtype)
        for layer in self.layers[:index]:
            x = layer(x, cos, sin)
        return self.layer_norm(x) if index == len(self.layers) else x


class MuQModel(nn.Module):
    """Waveform -> mel -> conv subsampling -> conformer hidden state (25 frames per second)."""

    def __init__(self, config: MuQConfig) -> None:
        super().__init__()
        self.config = config
        self.front_end = MelFrontEnd(config.hop_length, config.n_mels, config.mel_mean, config.mel_std)
        self.conv = ConvSubsampling(config)
        self.conformer = Conformer(config)

    def hidden_state(self, wave: torch.Tensor, layer_index: int) -> torch.Tensor:
        """Hidden state `layer_index` ([B, T', encoder_dim]; negative counts from the end of the
        depth + 1 states, as Python indexing of the reference's tuple does)."""
        count = self.config.encoder_depth + 1
        if not -count <= layer_index < count:
            raise ValueError(f"use_layer_idx {layer_index} is outside the {count} MuQ hidden states")
        return self.conformer.hidden_state(self.conv(self.front_end(wave)), layer_index % count)


class MuQ(nn.Module):
    """The `MuQ` wrapper of the reference, kept so that parameter names carry `model.model.`."""

    def __init__(self, config: MuQConfig) -> None:
        super().__init__()
        self.model = MuQModel(config)
