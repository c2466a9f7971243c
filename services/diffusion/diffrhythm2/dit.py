"""The DiffRhythm 2 DiT: a Llama-style bidirectional transformer over a 512-d conditioning space.

Module and parameter names follow the published checkpoint (`model.safetensors`, keys prefixed
`transformer.`), so a strict load of the published state dict fits this module tree exactly. The
REPA projectors exist only so that the strict load accepts their keys; they never run.

Every token (lyric token or latent frame) lives in a 512-d space: the style vector and a per-token
time embedding are added there, then `input_embed` lifts it to the model width. Time is -1 for the
lyric prefix, 0..1 for the noisy block being sampled and 1 for finished blocks.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Protocol

import torch
from torch import nn
from torch.nn import functional

from services.diffusion.onednn import Linear

COND_DIM = 512  # fixed by the architecture, not read from the config
TIME_FREQ_DIM = 256
ROPE_THETA = 10000.0
RMS_EPS = 1e-6
CONFIG_FILES = ("config.json", "model.json")


@dataclass(frozen=True)
class DiTConfig:
    """The published DiT hyperparameters (`config.json`, formerly `model.json`)."""

    dim: int = 2048
    depth: int = 16
    heads: int = 16
    ff_mult: int = 4
    mel_dim: int = 64
    text_num_embeds: int = 1000
    text_dim: int = 512
    conv_layers: int = 0
    long_skip_connection: bool = False
    use_flex_attn: bool = False
    repa_depth: int = 6
    repa_dims: tuple[int, ...] = field(default=(1024, 768))
    block_size: int = 10

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.dim // self.heads

    @classmethod
    def from_dict(cls, raw: dict) -> DiTConfig:
        """Build from the published JSON dict; keys this implementation does not know are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        if "repa_dims" in values:
            values["repa_dims"] = tuple(int(d) for d in values["repa_dims"])
        config = cls(**values)
        if config.long_skip_connection:
            raise ValueError("long_skip_connection=true is not supported (the published model has it off)")
        if config.dim % config.heads:
            raise ValueError(f"dim {config.dim} is not divisible by heads {config.heads}")
        return config

    @classmethod
    def from_model_dir(cls, model_dir: Path) -> DiTConfig:
        """Read `config.json`, or `model.json` when only the older name is present."""
        for name in CONFIG_FILES:
            path = Path(model_dir) / name
            if path.is_file():
                return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        raise FileNotFoundError(f"no {' or '.join(CONFIG_FILES)} in {model_dir}")

    def to_dict(self) -> dict:
        """The config as the published JSON dict."""
        raw = {f.name: getattr(self, f.name) for f in fields(self)}
        raw["repa_dims"] = list(self.repa_dims)
        return raw


class AttentionCache(Protocol):
    """Storage for one attention layer's keys and values across forward passes."""

    def extend(
        self, layer: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Place this pass's [B, H, N, D] keys/values after the stored ones; return all of them."""
        ...


class RMSNorm(nn.Module):
    """Llama RMSNorm: normalise in float32, scale by a learned weight in the input dtype."""

    def __init__(self, width: int, eps: float = RMS_EPS) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise the last dimension."""
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)


def rotary_tables(
    position_ids: torch.Tensor, head_dim: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE cos/sin [B, N, head_dim] for explicit positions [B, N], computed in float32."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64, device=position_ids.device).float() / head_dim
    inv_freq = 1.0 / (ROPE_THETA**exponents)
    angles = position_ids.float()[..., None] * inv_freq
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate [B, H, N, D] queries or keys by the tables from `rotary_tables`."""
    cos, sin = cos[:, None], sin[:, None]
    return x * cos + _rotate_half(x) * sin


class SelfAttention(nn.Module):
    """Multi-head attention with per-head q/k RMSNorm, RoPE and no biases; bidirectional, masked only
    where a batch of songs pads its rows' histories to one length."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.heads, self.head_dim = config.heads, config.head_dim
        self.q_proj = Linear(config.dim, config.dim, bias=False)
        self.k_proj = Linear(config.dim, config.dim, bias=False)
        self.v_proj = Linear(config.dim, config.dim, bias=False)
        self.o_proj = Linear(config.dim, config.dim, bias=False)
        self.q_norm = RMSNorm(config.head_dim)
        self.k_norm = RMSNorm(config.head_dim)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        cache: AttentionCache | None,
        layer: int,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend from every token of `x` [B, N, dim] to the cached tokens and to all of `x`; `mask`
        (boolean, broadcastable to [B, heads, N, keys]) marks the keys each row may see."""
        batch, length, _ = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.heads, self.head_dim).transpose(1, 2)

        q = apply_rotary(self.q_norm(heads(self.q_proj(x))), *rope)
        k = apply_rotary(self.k_norm(heads(self.k_proj(x))), *rope)
        v = heads(self.v_proj(x))
        if cache is not None:
            k, v = cache.extend(layer, k, v)
        out = functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, -1))


class SwiGLU(nn.Module):
    """The Llama MLP: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        hidden = config.dim * config.ff_mult
        self.gate_proj = Linear(config.dim, hidden, bias=False)
        self.up_proj = Linear(config.dim, hidden, bias=False)
        self.down_proj = Linear(hidden, config.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the gated MLP."""
        return self.down_proj(functional.silu(self.gate_proj(x)) * self.up_proj(x))


class TransformerBlock(nn.Module):
    """Pre-norm Llama block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.dim)
        self.self_attn = SelfAttention(config)
        self.post_attention_layernorm = RMSNorm(config.dim)
        self.mlp = SwiGLU(config)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        cache: AttentionCache | None,
        layer: int,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run one block."""
        x = x + self.self_attn(self.input_layernorm(x), rope, cache, layer, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class TimestepEmbedding(nn.Module):
    """Sinusoidal embedding of the per-token time (scale 1000, sin half first), then a SiLU MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.time_mlp = nn.Sequential(Linear(TIME_FREQ_DIM, COND_DIM), nn.SiLU(), Linear(COND_DIM, COND_DIM))

    def forward(self, time: torch.Tensor) -> torch.Tensor:
        """Map times [B, N] to [B, N, 512]."""
        half = TIME_FREQ_DIM // 2
        freqs = torch.exp(torch.arange(half, device=time.device).float() * -(math.log(10000) / (half - 1)))
        angles = 1000.0 * time.float()[..., None] * freqs
        sinusoid = torch.cat((angles.sin(), angles.cos()), dim=-1)
        return self.time_mlp(sinusoid.to(self.time_mlp[0].weight.dtype))


class TextEmbedding(nn.Module):
    """Lyric token ids to the 512-d space; row 0 is the null token used for unconditional guidance."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.text_embed = nn.Embedding(config.text_num_embeds + 1, COND_DIM)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Embed ids [B, L]."""
        return self.text_embed(ids)


class InputEmbedding(nn.Module):
    """Adds style and time in the 512-d space, a residual projection, then lifts to the model width."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.proj = Linear(COND_DIM, COND_DIM)
        self.proj_2 = Linear(COND_DIM, config.dim)

    def forward(self, x: torch.Tensor, style: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        """x, time_emb: [B, N, 512]; style: [B, 512]."""
        return self.proj_2(self.proj(x + style[:, None, :] + time_emb) + x)


class AdaLayerNormFinal(nn.Module):
    """Parameter-free LayerNorm modulated by scale and shift predicted from the time embedding alone."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.linear = Linear(COND_DIM, config.dim * 2)

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        """Normalise x [B, N, dim] and modulate it per token."""
        scale, shift = self.linear(functional.silu(time_emb)).chunk(2, dim=-1)
        return functional.layer_norm(x, (x.shape[-1],), eps=1e-6) * (1 + scale) + shift


def _repa_projector(dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        Linear(dim, dim * 2),
        nn.SiLU(),
        Linear(dim * 2, dim * 2),
        nn.SiLU(),
        Linear(dim * 2, out_dim),
    )


class DiT(nn.Module):
    """The velocity network: tokens in the 512-d space in, a 64-d velocity per token out."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = config
        self.time_embed = TimestepEmbedding()
        self.text_embed = TextEmbedding(config)
        self.input_embed = InputEmbedding(config)
        self.latent_embed = nn.Sequential(Linear(config.mel_dim, COND_DIM), Linear(COND_DIM, COND_DIM))
        self.transformer_blocks = nn.ModuleList(TransformerBlock(config) for _ in range(config.depth))
        self.norm_out = AdaLayerNormFinal(config)
        self.proj_out = Linear(config.dim, config.mel_dim)
        if config.repa_depth > 0:
            self.projectors = nn.ModuleList(_repa_projector(config.dim, d) for d in config.repa_dims)

    def drop_repa_projectors(self) -> None:
        """Free the training-only REPA projectors once a strict load has accepted their keys."""
        if hasattr(self, "projectors"):
            del self.projectors

    def forward(
        self,
        x: torch.Tensor,
        time: torch.Tensor,
        position_ids: torch.Tensor,
        style: torch.Tensor,
        cache: AttentionCache | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict [B, N, mel_dim] from tokens x [B, N, 512] at times [B, N] and positions [B, N].

        style is [B, 512]. With a cache, every token also attends to the cached tokens, and the
        cache decides whether this pass's keys and values are kept. `attention_mask` (boolean,
        [B, 1, 1, keys]) hides keys from rows whose history is shorter than the batch's longest.
        """
        time_emb = self.time_embed(time)
        h = self.input_embed(x, style, time_emb)
        rope = rotary_tables(position_ids, self.config.head_dim, h.dtype)
        for layer, block in enumerate(self.transformer_blocks):
            h = block(h, rope, cache, layer, attention_mask)
        return self.proj_out(self.norm_out(h, time_emb))
