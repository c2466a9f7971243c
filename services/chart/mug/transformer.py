"""The transformer both Mug-Diffusion networks use, with its relative-position attention.

A `ContextualTransformer` normalises its input, projects it to heads x dim_head channels, runs
`depth` blocks over the time axis (self-attention, cross-attention to the context or self-attention
again without one, a GEGLU feed-forward, each pre-LayerNorm and residual), projects back and adds
the input.

The attention is not the standard one: q, k, v have no bias; for query position i and key position j,
d = clamp(j - i, -64, 64) + 64 picks a per-head additive bias (added to q.k before the 1/sqrt(dim_head)
scaling) and a per-head multiplier applied to the softmax weights without renormalising. Both depend
only on the lengths, so they can be gathered once per length (`position_terms`) and reused.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from services.chart.mug.batch_invariant import Linear
from services.chart.mug.layers import group_norm

MAX_DISTANCE = 64
FF_MULT = 4

PositionTerms = tuple[torch.Tensor, torch.Tensor]


class RelativeAttention(nn.Module):
    """Multi-head attention with relative-position bias and weight multipliers."""

    def __init__(self, query_dim: int, context_dim: int | None, heads: int, dim_head: int) -> None:
        super().__init__()
        inner = heads * dim_head
        context_dim = context_dim or query_dim
        self.heads = heads
        self.scale = dim_head**-0.5
        self.to_q = Linear(query_dim, inner, bias=False)
        self.to_k = Linear(context_dim, inner, bias=False)
        self.to_v = Linear(context_dim, inner, bias=False)
        self.relative_position_embedding = nn.Parameter(torch.zeros(2 * MAX_DISTANCE + 1, heads))
        self.C_embedding = nn.Parameter(torch.ones(2 * MAX_DISTANCE + 1, heads))
        self.to_out = nn.Sequential(Linear(inner, query_dim))

    def position_terms(self, queries: int, keys: int) -> PositionTerms:
        """The additive bias and the weight multiplier, each [heads, queries, keys]."""
        device = self.relative_position_embedding.device
        distance = torch.arange(keys, device=device)[None, :] - torch.arange(queries, device=device)[:, None]
        index = distance.clamp(-MAX_DISTANCE, MAX_DISTANCE) + MAX_DISTANCE
        bias = self.relative_position_embedding[index].permute(2, 0, 1).contiguous()
        multiplier = self.C_embedding[index].permute(2, 0, 1).contiguous()
        return bias, multiplier

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, terms: PositionTerms | None = None
    ) -> torch.Tensor:
        """x [batch, n, query_dim], context [batch, m, context_dim] (None: x) -> [batch, n, query_dim]."""
        source = x if context is None else context
        batch, queries, _ = x.shape
        keys = source.shape[1]
        bias, multiplier = terms if terms is not None else self.position_terms(queries, keys)
        q = self.to_q(x).view(batch, queries, self.heads, -1).transpose(1, 2)
        k = self.to_k(source).view(batch, keys, self.heads, -1).transpose(1, 2)
        v = self.to_v(source).view(batch, keys, self.heads, -1).transpose(1, 2)
        scores = (q @ k.transpose(-1, -2) + bias) * self.scale
        weights = scores.softmax(dim=-1) * multiplier
        out = (weights @ v).transpose(1, 2).reshape(batch, queries, -1)
        return self.to_out(out)


class GEGLU(nn.Module):
    """Linear to 2 x dim_out, split into value and gate: value * GELU(gate) (erf form)."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[..., dim_in] -> [..., dim_out]."""
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * functional.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU to 4 x dim, then a Linear back (index 1 is the reference's dropout, a no-op here)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * FF_MULT), nn.Identity(), Linear(dim * FF_MULT, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[..., dim] -> [..., dim]."""
        return self.net(x)


class TransformerBlock(nn.Module):
    """Self-attention, cross-attention (self-attention without a context), feed-forward; each
    after a LayerNorm and added back."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int | None) -> None:
        super().__init__()
        self.attn1 = RelativeAttention(dim, None, heads, dim_head)
        self.ff = FeedForward(dim)
        self.attn2 = RelativeAttention(dim, context_dim, heads, dim_head)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None,
        terms: tuple[PositionTerms, PositionTerms] | None = None,
    ) -> torch.Tensor:
        """x [batch, n, dim], context [batch, m, context_dim] or None."""
        self_terms, cross_terms = terms if terms is not None else (None, None)
        x = self.attn1(self.norm1(x), terms=self_terms) + x
        x = self.attn2(self.norm2(x), context, terms=cross_terms) + x
        return self.ff(self.norm3(x)) + x

    def position_terms(self, length: int, context_tokens: int | None) -> tuple[PositionTerms, PositionTerms]:
        """Both attentions' position terms for a sequence of `length` (and the context's tokens)."""
        keys = length if context_tokens is None else context_tokens
        return self.attn1.position_terms(length, length), self.attn2.position_terms(length, keys)


class ContextualTransformer(nn.Module):
    """GroupNorm -> 1x1 conv in -> `depth` transformer blocks over time -> 1x1 conv out, plus the input."""

    def __init__(
        self, channels: int, heads: int, dim_head: int, depth: int = 1, context_dim: int | None = None
    ) -> None:
        super().__init__()
        inner = heads * dim_head
        self.norm = group_norm(channels)
        self.proj_in = nn.Conv1d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            TransformerBlock(inner, heads, dim_head, context_dim) for _ in range(depth)
        )
        self.proj_out = nn.Conv1d(inner, channels, 1)

    def position_terms(self, length: int, context_tokens: int | None) -> list:
        """Every block's position terms for a sequence of `length`, for reuse across calls."""
        return [block.position_terms(length, context_tokens) for block in self.transformer_blocks]

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, terms: list | None = None
    ) -> torch.Tensor:
        """x [batch, channels, n]; context [batch, tokens, context_dim] or None -> [batch, channels, n]."""
        h = self.proj_in(self.norm(x)).transpose(1, 2)
        for index, block in enumerate(self.transformer_blocks):
            h = block(h, context, None if terms is None else terms[index])
        return self.proj_out(h.transpose(1, 2)) + x
