"""The DiffRhythm v1 DiT: a bidirectional Llama-style transformer over the song's latent frames.

Module and parameter names follow the published checkpoint (`cfm_model.pt`, keys prefixed
`transformer.`), so a strict load fits this module tree exactly. Per frame, the input is the noisy
latent, the edit condition latent, the lyric token's text feature, the style vector and the time
conditioning (time + start time + duration embeddings), 1664 values lifted to the model width; a
grouped convolution adds position, then Llama blocks attend over the whole song (32 heads whatever
the config says: the reference builds its Llama layers with the default head count), and the first
half of the blocks add a projection of the text features after them.

`forward` is one reference call (one guidance branch); the sampler uses `embed_text`,
`time_conditioning` and `run` directly so that the text features, which do not change over the
steps, are computed once per song and both guidance branches run as one batch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional

COND_DIM = 512  # width of the style, time and text conditioning (fixed by the architecture)
TIME_FREQ_DIM = 256
ATTENTION_HEADS = 32  # the LlamaConfig default the reference's layers are built with
ROPE_THETA = 10000.0
RMS_EPS = 1e-6
NORM_EPS = 1e-6
CONV_POS_KERNEL = 31
CONV_POS_GROUPS = 16
TEXT_CONV_KERNEL = 7
BASE_MAX_FRAMES = 2048
FULL_MAX_FRAMES = 6144
CONFIG_FILE = "config.json"
MODEL_TYPE = "diffrhythm"


@dataclass(frozen=True)
class DiTConfig:
    """The published DiT hyperparameters (the `model` object of `config/diffrhythm-1b.json`) and the
    context length, which the checkpoint decides: 2048 frames (base) or 6144 (full)."""

    dim: int = 2048
    depth: int = 16
    heads: int = 32
    ff_mult: int = 4
    text_dim: int = 512
    conv_layers: int = 4
    mel_dim: int = 64
    text_num_embeds: int = 363
    max_frames: int = FULL_MAX_FRAMES

    @property
    def head_dim(self) -> int:
        """Width of one attention head: always dim / 32 (`heads` is not read, as in the reference)."""
        return self.dim // ATTENTION_HEADS

    @property
    def full_model(self) -> bool:
        """Whether this is the 6144-frame model, the one with a duration embedding."""
        return self.max_frames == FULL_MAX_FRAMES

    @classmethod
    def from_dict(cls, raw: dict, max_frames: int) -> DiTConfig:
        """Build from the repo's JSON (`{"model_type": "diffrhythm", "model": {...}}`) for a context
        of `max_frames`; ValueError for another model type or values the architecture cannot take."""
        if raw.get("model_type") != MODEL_TYPE:
            raise ValueError(f"model_type is {raw.get('model_type')!r}, not {MODEL_TYPE!r}")
        known = {spec.name for spec in fields(cls)} - {"max_frames"}
        config = cls(**{k: v for k, v in raw.get("model", {}).items() if k in known}, max_frames=max_frames)
        if config.text_dim != COND_DIM:
            raise ValueError(f"text_dim must be {COND_DIM} (the text fusion takes 512-d features)")
        if config.dim % ATTENTION_HEADS or config.dim % CONV_POS_GROUPS:
            raise ValueError(f"dim {config.dim} must be divisible by {ATTENTION_HEADS} and {CONV_POS_GROUPS}")
        if max_frames not in (BASE_MAX_FRAMES, FULL_MAX_FRAMES):
            raise ValueError(f"max_frames must be {BASE_MAX_FRAMES} or {FULL_MAX_FRAMES}")
        return config

    @classmethod
    def from_model_dir(cls, model_dir: Path, max_frames: int) -> DiTConfig:
        """Read `config.json` from a model folder."""
        return cls.from_dict(
            json.loads((Path(model_dir) / CONFIG_FILE).read_text(encoding="utf-8")), max_frames
        )

    def to_dict(self) -> dict:
        """The config as the repo's JSON (the context length is not part of it)."""
        model = {spec.name: getattr(self, spec.name) for spec in fields(self) if spec.name != "max_frames"}
        return {"model_type": MODEL_TYPE, "model": model}


class TimestepEmbedding(nn.Module):
    """A scalar per song (time, start time, duration) to 512-d: sinusoid (scale 1000, sin half
    first) then a SiLU MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.time_mlp = nn.Sequential(
            nn.Linear(TIME_FREQ_DIM, COND_DIM), nn.SiLU(), nn.Linear(COND_DIM, COND_DIM)
        )

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        """Map values [B] to [B, 512]."""
        half = TIME_FREQ_DIM // 2
        freqs = torch.exp(torch.arange(half, device=value.device).float() * -(math.log(10000) / (half - 1)))
        angles = (1000.0 * value.float())[:, None] * freqs[None]
        sinusoid = torch.cat((angles.sin(), angles.cos()), dim=-1)
        return self.time_mlp(sinusoid.to(self.time_mlp[0].weight.dtype))


class GlobalResponseNorm(nn.Module):
    """ConvNeXt-V2 GRN with the L2 norm over the time axis, so features depend on the whole song."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, width))
        self.beta = nn.Parameter(torch.zeros(1, 1, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, N, width]."""
        norm = torch.norm(x, p=2, dim=1, keepdim=True)
        scaled = norm / (norm.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * scaled) + self.beta + x


class ConvNeXtV2Block(nn.Module):
    """Depthwise conv over time, LayerNorm, GELU MLP with GRN, residual."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(width, width, TEXT_CONV_KERNEL, padding=TEXT_CONV_KERNEL // 2, groups=width)
        self.norm = nn.LayerNorm(width, eps=NORM_EPS)
        self.pwconv1 = nn.Linear(width, hidden)
        self.grn = GlobalResponseNorm(hidden)
        self.pwconv2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, N, width]."""
        h = self.dwconv(x.transpose(1, 2)).transpose(1, 2)
        h = self.pwconv2(self.grn(functional.gelu(self.pwconv1(self.norm(h)))))
        return x + h


class TextEmbedding(nn.Module):
    """Frame token ids to 512-d text features: embedding (row 0 = no token), a fixed sinusoidal
    position table ([cos | sin]), then ConvNeXt-V2 blocks."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.max_frames = config.max_frames
        self.text_embed = nn.Embedding(config.text_num_embeds + 1, config.text_dim)
        if config.conv_layers > 0:
            self.text_blocks = nn.Sequential(
                *(ConvNeXtV2Block(config.text_dim, config.text_dim * 2) for _ in range(config.conv_layers))
            )

    def positions(self, length: int, width: int, device: torch.device) -> torch.Tensor:
        """The position table rows 0..length-1 (clamped to the context), [length, width]."""
        freqs = 1.0 / (ROPE_THETA ** (torch.arange(0, width, 2, device=device)[: width // 2].float() / width))
        index = torch.arange(length, device=device).clamp(max=self.max_frames - 1).float()
        angles = index[:, None] * freqs[None]
        return torch.cat((angles.cos(), angles.sin()), dim=-1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: [B, N] in 0..text_num_embeds; returns [B, N, 512]."""
        features = self.text_embed(ids)
        if not hasattr(self, "text_blocks"):
            return features
        table = self.positions(ids.shape[1], features.shape[-1], ids.device).to(features.dtype)
        return self.text_blocks(features + table)


class ConvPositionEmbedding(nn.Module):
    """Two grouped convolutions over time with Mish, added to the input as a position signal."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        pad = CONV_POS_KERNEL // 2
        self.conv1d = nn.Sequential(
            nn.Conv1d(dim, dim, CONV_POS_KERNEL, groups=CONV_POS_GROUPS, padding=pad),
            nn.Mish(),
            nn.Conv1d(dim, dim, CONV_POS_KERNEL, groups=CONV_POS_GROUPS, padding=pad),
            nn.Mish(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, N, dim]."""
        return self.conv1d(x.transpose(1, 2)).transpose(1, 2)


class InputEmbedding(nn.Module):
    """Concatenate [x, cond, text, style, conditioning] per frame (1664 values), project to the model
    width, add the convolutional position signal."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.proj = nn.Linear(config.mel_dim * 2 + config.text_dim + COND_DIM * 2, config.dim)
        self.conv_pos_embed = ConvPositionEmbedding(config.dim)

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor, text: torch.Tensor, style: torch.Tensor, c: torch.Tensor
    ) -> torch.Tensor:
        """x, cond: [B, N, 64]; text: [B, N, 512]; style, c: [B, 512]."""
        frames = x.shape[1]
        per_frame = (style[:, None].expand(-1, frames, -1), c[:, None].expand(-1, frames, -1))
        h = self.proj(torch.cat((x, cond, text, *per_frame), dim=-1))
        return self.conv_pos_embed(h) + h


class RMSNorm(nn.Module):
    """Llama RMSNorm: normalise in float32, scale by the weight in the input dtype."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise the last dimension."""
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + RMS_EPS)
        return self.weight * x32.to(x.dtype)


def rotary_tables(
    length: int, head_dim: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, ...]:
    """RoPE cos/sin [N, head_dim] for positions 0..N-1 (rotate-half layout), computed in float32."""
    inv_freq = 1.0 / (ROPE_THETA ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim))
    angles = torch.arange(length, device=device).float()[:, None] * inv_freq[None]
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate queries or keys [B, H, N, D] by the tables of `rotary_tables`."""
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-second, first), dim=-1) * sin


class SelfAttention(nn.Module):
    """Bidirectional multi-head attention with RoPE and no biases (Llama's projections)."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.head_dim = config.head_dim
        self.q_proj = nn.Linear(config.dim, config.dim, bias=False)
        self.k_proj = nn.Linear(config.dim, config.dim, bias=False)
        self.v_proj = nn.Linear(config.dim, config.dim, bias=False)
        self.o_proj = nn.Linear(config.dim, config.dim, bias=False)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Every frame of x [B, N, dim] attends to every frame."""
        batch, length, _ = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, ATTENTION_HEADS, self.head_dim).transpose(1, 2)

        q = apply_rotary(heads(self.q_proj(x)), *rope)
        k = apply_rotary(heads(self.k_proj(x)), *rope)
        out = functional.scaled_dot_product_attention(q, k, heads(self.v_proj(x)))
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, -1))


class GatedMLP(nn.Module):
    """Llama's MLP: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        hidden = config.dim * config.ff_mult
        self.gate_proj = nn.Linear(config.dim, hidden, bias=False)
        self.up_proj = nn.Linear(config.dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, config.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the gated MLP."""
        return self.down_proj(functional.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaBlock(nn.Module):
    """transformers' LlamaDecoderLayer as the reference runs it: pre-RMSNorm attention and MLP."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.dim)
        self.self_attn = SelfAttention(config)
        self.post_attention_layernorm = RMSNorm(config.dim)
        self.mlp = GatedMLP(config)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Run one block."""
        x = x + self.self_attn(self.input_layernorm(x), rope)
        return x + self.mlp(self.post_attention_layernorm(x))


class AdaLayerNormFinal(nn.Module):
    """LayerNorm without affine, modulated by (scale, shift) predicted from the conditioning."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.linear = nn.Linear(COND_DIM, config.dim * 2)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x: [B, N, dim]; c: [B, 512]."""
        scale, shift = self.linear(functional.silu(c)).chunk(2, dim=-1)
        return functional.layer_norm(x, (x.shape[-1],), eps=NORM_EPS) * (1 + scale)[:, None] + shift[:, None]


class DiT(nn.Module):
    """The velocity network: a song's noisy latents and conditioning in, a velocity per frame out."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = config
        self.time_embed = TimestepEmbedding()
        self.start_time_embed = TimestepEmbedding()
        if config.full_model:
            self.duration_time_embed = TimestepEmbedding()
        self.text_embed = TextEmbedding(config)
        self.input_embed = InputEmbedding(config)
        self.transformer_blocks = nn.ModuleList(LlamaBlock(config) for _ in range(config.depth))
        self.text_fusion_linears = nn.ModuleList(
            nn.Sequential(nn.Linear(COND_DIM, config.dim), nn.SiLU()) for _ in range(config.depth // 2)
        )
        self.norm_out = AdaLayerNormFinal(config)
        self.proj_out = nn.Linear(config.dim, config.mel_dim)

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        """Text features [B, N, 512] of frame token ids [B, N] (all zeros for the unconditional branch)."""
        return self.text_embed(ids)

    def time_conditioning(
        self, time: torch.Tensor, start_time: torch.Tensor, duration: torch.Tensor
    ) -> torch.Tensor:
        """The per-song conditioning c [B, 512]: time + start time (+ duration in the full model)."""
        c = self.time_embed(time) + self.start_time_embed(start_time)
        return c + self.duration_time_embed(duration) if self.config.full_model else c

    def run(
        self, x: torch.Tensor, cond: torch.Tensor, text: torch.Tensor, style: torch.Tensor, c: torch.Tensor
    ) -> torch.Tensor:
        """The velocity [B, N, 64] from latents x and cond [B, N, 64], text features [B, N, 512],
        style [B, 512] and conditioning c [B, 512]."""
        h = self.input_embed(x, cond, text, style, c)
        rope = rotary_tables(h.shape[1], self.config.head_dim, h.device, h.dtype)
        fused = len(self.text_fusion_linears)
        for index, block in enumerate(self.transformer_blocks):
            h = block(h, rope)
            if index < fused:
                h = h + self.text_fusion_linears[index](text)
        return self.proj_out(self.norm_out(h, c))

    def forward(
        self,
        x: torch.Tensor,
        cond: torch.Tensor,
        text: torch.Tensor,
        time: torch.Tensor,
        style: torch.Tensor,
        start_time: torch.Tensor,
        duration: torch.Tensor,
        drop_audio_cond: bool = False,
        drop_text: bool = False,
    ) -> torch.Tensor:
        """One reference DiT call: x, cond [B, N, 64]; text ids [B, N]; time, start_time, duration
        [B] (a 0-d time is used for every song); style [B, 512]. `drop_audio_cond` zeroes cond and
        `drop_text` every text id, as the unconditional guidance branch does."""
        if time.ndim == 0:
            time = time.repeat(x.shape[0])
        if drop_audio_cond:
            cond = torch.zeros_like(cond)
        if drop_text:
            text = torch.zeros_like(text)
        c = self.time_conditioning(time, start_time, duration)
        return self.run(x, cond, self.embed_text(text), style, c)
