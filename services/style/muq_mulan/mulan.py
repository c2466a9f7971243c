"""MuQ-MuLan: the MuLan audio and text heads over MuQ and XLM-RoBERTa, and the whole model.

Names follow the published state dict (everything under `mulan.`), so the checkpoint loads as is.
Both heads run the same small transformer (pre-norm, bias-free LayerNorm, l2-normalised q/k with a
fixed logit scale of 8, GEGLU feed-forward), mean-pool over time and project to the 512-d latent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias
from torch import nn
from transformers import XLMRobertaConfig, XLMRobertaModel

from services.style.muq_mulan.muq import MuQ, MuQConfig

ATTENTION_LOGIT_SCALE = 8.0


@dataclass(frozen=True)
class HeadConfig:
    """One MuLan transformer (`audio_transformer` / `text_transformer` in config.json)."""

    dim: int = 768
    depth: int = 8
    heads: int = 8
    dim_head: int = 64
    ff_mult: float = 4

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HeadConfig:
        """Read one transformer group; training-only keys (dropouts, max_seq_len) are ignored."""
        return cls(
            dim=int(data.get("dim", 768)),
            depth=int(data.get("tf_depth", 8)),
            heads=int(data.get("heads", 8)),
            dim_head=int(data.get("dim_head", 64)),
            ff_mult=float(data.get("ff_mult", 4)),
        )


@dataclass(frozen=True)
class MuLanConfig:
    """The MuLan checkpoint's config.json, with the sub-model configs it names already read."""

    sample_rate: int
    clip_secs: float
    dim_latent: int
    audio_model_name: str
    audio_model_dim: int | None
    audio_layer_index: int
    text_model_name: str
    text_model_dim: int | None
    audio_head: HeadConfig
    text_head: HeadConfig

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MuLanConfig:
        """Read the five groups of the checkpoint's config.json."""
        for group in ("mulan", "audio_model", "text_model", "audio_transformer", "text_transformer"):
            if not isinstance(data.get(group), dict):
                raise ValueError(f"MuLan config.json: group {group!r} is missing")
        mulan, audio, text = data["mulan"], data["audio_model"], data["text_model"]
        if not audio.get("name") or not text.get("name"):
            raise ValueError("MuLan config.json: audio_model.name and text_model.name are required")
        text_dim = text.get("model_dim")
        return cls(
            sample_rate=int(mulan.get("sr", 24000)),
            clip_secs=float(mulan.get("clip_secs", 10)),
            dim_latent=int(mulan.get("dim_latent", 512)),
            audio_model_name=str(audio["name"]),
            audio_model_dim=None if audio.get("model_dim") is None else int(audio["model_dim"]),
            audio_layer_index=int(audio.get("use_layer_idx", -1)),
            text_model_name=str(text["name"]),
            text_model_dim=None if text_dim is None else int(text_dim),
            audio_head=HeadConfig.from_json(data["audio_transformer"]),
            text_head=HeadConfig.from_json(data["text_transformer"]),
        )

    @property
    def clip_samples(self) -> int:
        """Samples in one clip (10 s at 24 kHz = 240,000)."""
        return int(self.sample_rate * self.clip_secs)


class BiasFreeLayerNorm(nn.Module):
    """LayerNorm with a learned gain and a fixed zero bias."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.learned_gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise the last dimension (eps 1e-5)."""
        return F.layer_norm(x, x.shape[-1:], self.learned_gamma)


class Attention(nn.Module):
    """Pre-norm attention with l2-normalised, learned-scaled q and k and a fixed logit scale."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        inner = config.heads * config.dim_head
        self.heads = config.heads
        self.norm = BiasFreeLayerNorm(config.dim)
        self.to_q = nn.Linear(config.dim, inner, bias=False)
        self.to_kv = nn.Linear(config.dim, inner * 2, bias=False)
        self.q_scale = nn.Parameter(torch.ones(config.dim_head))
        self.k_scale = nn.Parameter(torch.ones(config.dim_head))
        self.to_out = nn.Sequential(nn.Linear(inner, config.dim, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N, dim] -> [B, N, dim]; every position attends to every position (no mask)."""
        batch, length, _ = x.shape
        x = self.norm(x)
        key, value = self.to_kv(x).chunk(2, dim=-1)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.heads, -1).transpose(1, 2)

        q = F.normalize(heads(self.to_q(x)), dim=-1) * self.q_scale
        k = F.normalize(heads(key), dim=-1) * self.k_scale
        out = F.scaled_dot_product_attention(q, k, heads(value), scale=ATTENTION_LOGIT_SCALE)
        return self.to_out(out.transpose(1, 2).reshape(batch, length, -1))


class GEGLU(nn.Module):
    """First half times GELU (erf) of the second half."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[..., 2h] -> [..., h]."""
        value, gate = x.chunk(2, dim=-1)
        return F.gelu(gate) * value


def feed_forward(config: HeadConfig) -> nn.Sequential:
    """LayerNorm, Linear(dim, 2h), GEGLU, (dropout slot), Linear(h, dim), h = int(dim * mult * 2/3)."""
    hidden = int(config.dim * config.ff_mult * 2 / 3)
    return nn.Sequential(
        BiasFreeLayerNorm(config.dim),
        nn.Linear(config.dim, hidden * 2, bias=False),
        GEGLU(),
        nn.Identity(),
        nn.Linear(hidden, config.dim, bias=False),
    )


class MuLanTransformer(nn.Module):
    """Residual attention and feed-forward blocks (`layers.N.0` attention, `layers.N.1` feed-forward)."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([Attention(config), feed_forward(config)]) for _ in range(config.depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N, dim] -> [B, N, dim]."""
        for attention, ff in self.layers:
            x = attention(x) + x
            x = ff(x) + x
        return x


class AudioHead(nn.Module):
    """MuQ hidden state -> projection -> MuLan transformer -> mean over time."""

    def __init__(self, config: MuLanConfig, muq: MuQConfig) -> None:
        super().__init__()
        self.layer_index = config.audio_layer_index
        self.model = MuQ(muq)
        self.proj = nn.Linear(config.audio_model_dim or muq.encoder_dim, config.audio_head.dim)
        self.transformer = MuLanTransformer(config.audio_head)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Clips [B, samples] -> pooled features [B, dim]."""
        return self.pool(self.model.model.hidden_state(wave, self.layer_index))

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """MuQ hidden state [B, T, model_dim] -> pooled features [B, dim]."""
        return self.transformer(self.proj(hidden)).mean(dim=-2)


class TextHead(nn.Module):
    """XLM-R last hidden state -> projection (Identity when the widths match) -> transformer -> mean."""

    def __init__(self, config: MuLanConfig, xlmr: XLMRobertaConfig) -> None:
        super().__init__()
        self.model = XLMRobertaModel(xlmr, add_pooling_layer=False)
        model_dim = config.text_model_dim
        dim = config.text_head.dim
        self.proj = nn.Linear(model_dim, dim) if model_dim is not None and model_dim != dim else nn.Identity()
        self.transformer = MuLanTransformer(config.text_head)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """XLM-R's last hidden state [B, N, hidden] for padded token ids."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token ids [B, N] -> pooled features [B, dim]; padding positions are included in the mean
        (the MuLan transformer sees no mask), exactly as the reference does."""
        return self.transformer(self.proj(self.encode(input_ids, attention_mask))).mean(dim=-2)


class MuLan(nn.Module):
    """Both towers and their projections to the shared latent space."""

    def __init__(self, config: MuLanConfig, muq: MuQConfig, xlmr: XLMRobertaConfig) -> None:
        super().__init__()
        self.audio = AudioHead(config, muq)
        self.text = TextHead(config, xlmr)
        self.audio_to_latents = nn.Linear(config.audio_head.dim, config.dim_latent)
        self.text_to_latents = nn.Linear(config.text_head.dim, config.dim_latent)


class MuQMuLan(nn.Module):
    """The checkpoint's root module: unit-length audio and text latents."""

    def __init__(self, config: MuLanConfig, muq: MuQConfig, xlmr: XLMRobertaConfig) -> None:
        super().__init__()
        self.config = config
        self.mulan = MuLan(config, muq, xlmr)

    def audio_latents(self, clips: torch.Tensor) -> torch.Tensor:
        """Clips [B, clip_samples] at 24 kHz -> unit latents [B, dim_latent]."""
        return F.normalize(self.mulan.audio_to_latents(self.mulan.audio(clips)), dim=-1)

    def audio_latents_from_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        """MuQ hidden state [B, T, model_dim] -> unit latents [B, dim_latent]."""
        return F.normalize(self.mulan.audio_to_latents(self.mulan.audio.pool(hidden)), dim=-1)

    def text_latents(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Padded token ids [B, N] -> unit latents [B, dim_latent]."""
        return F.normalize(self.mulan.text_to_latents(self.mulan.text(input_ids, attention_mask)), dim=-1)
