"""MusicGen's codebook language model (the decoder of `MusicgenForConditionalGeneration` and of
`MusicgenMelodyForConditionalGeneration`), with a preallocated KV cache.

The LM reads K codebooks per position (one embedding table per codebook, PAD included, summed), adds
sinusoidal positions, runs pre-norm transformer layers and predicts K rows of V logits with one head
per codebook. Text conditioning differs by model type:

- `musicgen`: the T5 states, projected to the LM width (`enc_to_dec_proj`), are the memory of a
  cross-attention in every layer. The unconditional branch's memory is exactly zero (zero states times
  a zero mask), so its cross-attention output is exactly zero: only the conditional rows run it.
- `musicgen_melody`: no cross-attention. `[proj(chroma) tiled to chroma_length ; proj(text)]` is a prefix
  of the sequence, fed once on the first forward and kept in the KV cache; positions count it.

Weights load from the published checkpoint's `decoder.*`, `enc_to_dec_proj.*` and
`audio_enc_to_dec_proj.*` keys, strictly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional

from services.runtime.hub_checkpoint import check_keys, read_tensors
from services.runtime.model_files import read_json

MUSICGEN = "musicgen"
MUSICGEN_MELODY = "musicgen_melody"
MODEL_TYPES = (MUSICGEN, MUSICGEN_MELODY)
CONFIG_FILE = "config.json"
# Checkpoint key prefixes of the LM (the generation stage owns the text and chroma projections).
DECODER_PREFIX = "decoder.model.decoder."
HEADS_PREFIX = "decoder.lm_heads."
CHECKPOINT_PREFIXES = ("decoder.", "enc_to_dec_proj.", "audio_enc_to_dec_proj.")
ACTIVATIONS = {"gelu": functional.gelu, "relu": functional.relu}


@dataclass(frozen=True)
class LmConfig:
    """The LM's hyperparameters, read from the model's `config.json` (its `decoder` section, the text
    encoder's width, the melody settings and EnCodec's rates)."""

    model_type: str
    hidden_size: int
    num_layers: int
    num_heads: int
    ffn_dim: int
    num_codebooks: int
    vocab_size: int
    pad_token_id: int
    audio_channels: int
    max_position_embeddings: int
    activation: str
    scale_embedding: bool
    text_hidden_size: int
    project_text: bool
    num_chroma: int
    chroma_length: int
    sample_rate: int
    samples_per_frame: int

    @classmethod
    def from_dict(cls, config: dict) -> LmConfig:
        """Parse a MusicGen `config.json` (a ValueError names what is missing or unsupported)."""
        model_type = config.get("model_type")
        if model_type not in MODEL_TYPES:
            raise ValueError(f"model_type must be one of {', '.join(MODEL_TYPES)}, not {model_type!r}")
        try:
            decoder, text, audio = config["decoder"], config["text_encoder"], config["audio_encoder"]
            text_width = int(text["d_model"])
            hidden = int(decoder["hidden_size"])
            cross_width = decoder.get("cross_attention_hidden_size")
            activation = decoder.get("activation_function", "gelu")
            if activation not in ACTIVATIONS:
                raise ValueError(f"unsupported activation_function {activation!r}")
            melody = model_type == MUSICGEN_MELODY
            return cls(
                model_type=model_type,
                hidden_size=hidden,
                num_layers=int(decoder["num_hidden_layers"]),
                num_heads=int(decoder["num_attention_heads"]),
                ffn_dim=int(decoder["ffn_dim"]),
                num_codebooks=int(decoder["num_codebooks"]),
                vocab_size=int(decoder["vocab_size"]),
                pad_token_id=int(decoder.get("pad_token_id", decoder["vocab_size"])),
                audio_channels=int(decoder.get("audio_channels", 1)),
                max_position_embeddings=int(decoder.get("max_position_embeddings", 2048)),
                activation=activation,
                scale_embedding=bool(decoder.get("scale_embedding", False)),
                text_hidden_size=text_width,
                project_text=text_width != hidden and (melody or cross_width is None),
                num_chroma=int(config.get("num_chroma", 12)) if melody else 0,
                chroma_length=int(config.get("chroma_length", 235)) if melody else 0,
                sample_rate=int(audio["sampling_rate"]),
                samples_per_frame=math.prod(int(r) for r in audio["upsampling_ratios"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"config.json lacks a MusicGen setting: {exc}") from exc

    @classmethod
    def from_model_dir(cls, model_dir: Path) -> LmConfig:
        """Read `config.json` from a model folder."""
        config = read_json(model_dir, CONFIG_FILE)
        if config is None:
            raise ValueError(f"no readable {CONFIG_FILE} in {model_dir}")
        return cls.from_dict(config)

    @property
    def melody(self) -> bool:
        """True for melody-conditioned models (chroma prefix, no cross-attention)."""
        return self.model_type == MUSICGEN_MELODY

    @property
    def frame_rate(self) -> float:
        """Code frames per second (50 for the 32 kHz EnCodec)."""
        return self.sample_rate / self.samples_per_frame

    @property
    def delays(self) -> tuple[int, ...]:
        """Delay of each codebook in the delay pattern: k for mono, k // 2 for interleaved stereo
        (left and right codebooks of one level share a delay)."""
        per_level = 2 if self.audio_channels == 2 else 1
        return tuple(k // per_level for k in range(self.num_codebooks))

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_heads


def sinusoidal_positions(positions: torch.Tensor, width: int) -> torch.Tensor:
    """MusicGen's sinusoidal position embeddings [n, width] (cosines first, then sines, float32)."""
    half = width // 2
    step = math.log(10000) / (half - 1)
    frequencies = torch.exp(torch.arange(half, dtype=torch.int64, device=positions.device).float() * -step)
    angles = positions.float().unsqueeze(1) * frequencies.unsqueeze(0)
    table = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    if width % 2 == 1:
        table = functional.pad(table, (0, 1))
    return table


class KvCache:
    """Keys and values of every layer for `rows` sequences of up to `capacity` positions, allocated once
    (a step writes its position in place; nothing is concatenated or copied as the song grows), and the
    position embeddings of those positions."""

    def __init__(self, config: LmConfig, rows: int, capacity: int, device: torch.device, dtype: torch.dtype):
        shape = (config.num_layers, rows, config.num_heads, capacity, config.head_dim)
        self.keys = torch.empty(shape, device=device, dtype=dtype)
        self.values = torch.empty(shape, device=device, dtype=dtype)
        self.positions = sinusoidal_positions(torch.arange(capacity, device=device), config.hidden_size).to(
            dtype
        )
        self.capacity = capacity
        self.length = 0

    def append(
        self, layer: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store a layer's keys and values [rows, heads, n, head_dim] after the cached positions and
        return that layer's keys and values up to them (the caller advances `length` once per forward)."""
        end = self.length + keys.shape[2]
        if end > self.capacity:
            raise ValueError(f"KV cache holds {self.capacity} positions; {end} were asked for")
        self.keys[layer, :, :, self.length : end] = keys
        self.values[layer, :, :, self.length : end] = values
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]


@dataclass(frozen=True)
class CrossMemory:
    """Cross-attention for the conditional rows, prepared once per song for every layer.

    Folded form (`scores`, `outputs`): the query projection is folded into the keys and the output
    projection into the values, so a step reads two [width, heads x T] matrices per layer instead of
    two [width, width] ones: `scores[l]` [rows, width, heads x T] (Wq_h^T K_h^T / sqrt(d) per head),
    `outputs[l]` [rows, heads x T, width] (V_h Wo_h^T per head). Used when heads x T <= width (prompts
    up to head_dim tokens, which covers typical prompts); otherwise `keys` / `values` [rows, heads, T,
    head_dim] for the ordinary form. `mask` [rows, T] (True = attend) when the rows' prompts differ
    in length.
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    scores: list[torch.Tensor]
    outputs: list[torch.Tensor]
    mask: torch.Tensor | None

    @property
    def rows(self) -> int:
        """The conditional rows the memory serves."""
        return (self.scores or self.keys)[0].shape[0]


class Attention(nn.Module):
    """Multi-head attention without biases (MusicGen's self- and cross-attention)."""

    def __init__(self, config: LmConfig) -> None:
        super().__init__()
        width = config.hidden_size
        self.heads = config.num_heads
        self.head_dim = config.head_dim
        self.q_proj = nn.Linear(width, width, bias=False)
        self.k_proj = nn.Linear(width, width, bias=False)
        self.v_proj = nn.Linear(width, width, bias=False)
        self.out_proj = nn.Linear(width, width, bias=False)

    def split(self, states: torch.Tensor) -> torch.Tensor:
        """[rows, n, width] -> [rows, heads, n, head_dim]."""
        return states.view(states.shape[0], states.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def attend(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor | None,
        causal: bool,
    ) -> torch.Tensor:
        """Scaled dot-product attention of `query` [rows, n, width] on split keys and values."""
        rows, length, _ = query.shape
        heads = functional.scaled_dot_product_attention(
            self.split(self.q_proj(query)), keys, values, mask, is_causal=causal
        )
        return self.out_proj(heads.transpose(1, 2).reshape(rows, length, -1))


class DecoderLayer(nn.Module):
    """One pre-norm layer: self-attention, cross-attention (text-conditioned models), feed-forward."""

    def __init__(self, config: LmConfig, cross_attention: bool) -> None:
        super().__init__()
        width = config.hidden_size
        self.self_attn = Attention(config)
        self.self_attn_layer_norm = nn.LayerNorm(width)
        if cross_attention:
            self.encoder_attn = Attention(config)
            self.encoder_attn_layer_norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, config.ffn_dim, bias=False)
        self.fc2 = nn.Linear(config.ffn_dim, width, bias=False)
        self.final_layer_norm = nn.LayerNorm(width)
        self.activation = ACTIVATIONS[config.activation]

    def forward(
        self, hidden: torch.Tensor, index: int, cache: KvCache, memory: CrossMemory | None
    ) -> torch.Tensor:
        """Run the layer on the new positions `hidden` [rows, n, width], reading and extending `cache`."""
        attention = self.self_attn
        normed = self.self_attn_layer_norm(hidden)
        keys, values = cache.append(
            index, attention.split(attention.k_proj(normed)), attention.split(attention.v_proj(normed))
        )
        new = hidden.shape[1]
        mask = None
        if new > 1 and cache.length > 0:
            mask = torch.ones(new, keys.shape[2], dtype=torch.bool, device=hidden.device).tril(cache.length)
        causal = new > 1 and cache.length == 0
        hidden = hidden + attention.attend(normed, keys, values, mask, causal)
        if memory is not None:
            # The unconditional rows' memory is exactly zero, so is their cross-attention output.
            conditioned = memory.rows
            hidden[:conditioned] += self.cross_attend(
                self.encoder_attn_layer_norm(hidden[:conditioned]), index, memory
            )
        residual = hidden
        hidden = self.fc2(self.activation(self.fc1(self.final_layer_norm(hidden))))
        return residual + hidden

    def cross_attend(self, normed: torch.Tensor, index: int, memory: CrossMemory) -> torch.Tensor:
        """Cross-attention output for the conditional rows' normed states [rows, n, width]."""
        if not memory.scores:
            key_mask = None if memory.mask is None else memory.mask[:, None, None, :]
            return self.encoder_attn.attend(normed, memory.keys[index], memory.values[index], key_mask, False)
        rows, new, _ = normed.shape
        scores = torch.bmm(normed, memory.scores[index]).view(rows, new, self.encoder_attn.heads, -1)
        if memory.mask is not None:
            scores = scores.masked_fill(~memory.mask[:, None, None, :], -float("inf"))
        weights = scores.softmax(dim=-1).view(rows, new, -1)
        return torch.bmm(weights, memory.outputs[index])


class MusicgenLm(nn.Module):
    """The codebook LM: code embeddings, decoder layers, per-codebook heads, conditioning projections."""

    def __init__(self, config: LmConfig) -> None:
        super().__init__()
        self.config = config
        width = config.hidden_size
        self.embed_tokens = nn.ModuleList(
            nn.Embedding(config.vocab_size + 1, width) for _ in range(config.num_codebooks)
        )
        self.layers = nn.ModuleList(DecoderLayer(config, not config.melody) for _ in range(config.num_layers))
        self.layer_norm = nn.LayerNorm(width)
        self.lm_heads = nn.ModuleList(
            nn.Linear(width, config.vocab_size, bias=False) for _ in range(config.num_codebooks)
        )
        self.enc_to_dec_proj = nn.Linear(config.text_hidden_size, width) if config.project_text else None
        self.audio_enc_to_dec_proj = (
            nn.Linear(config.num_chroma, width) if config.melody and config.num_chroma != width else None
        )
        self.embed_scale = math.sqrt(width) if config.scale_embedding else 1.0
        # None: fold the cross-attention projections when that reads less (see CrossMemory).
        self.fold_cross_attention: bool | None = None

    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return self.layer_norm.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The weights' precision."""
        return self.layer_norm.weight.dtype

    def project_text(self, states: torch.Tensor) -> torch.Tensor:
        """T5 states [rows, T, d_text] in the LM's width."""
        states = states.to(self.device, self.dtype)
        return self.enc_to_dec_proj(states) if self.enc_to_dec_proj is not None else states

    def cross_memory(self, text: torch.Tensor, mask: torch.Tensor | None) -> CrossMemory:
        """Cross-attention memory of every layer for the conditional rows' projected text
        [rows, T, width]; `mask` [rows, T] marks real positions when the rows were padded. The folded
        form is used when heads x T <= width (where it reads less), unless `fold_cross_attention`
        says otherwise."""
        heads, head_dim, width = self.config.num_heads, self.config.head_dim, self.config.hidden_size
        rows, length, _ = text.shape
        fold = self.fold_cross_attention
        if fold is None:
            fold = heads * length <= width
        keys, values, scores, outputs = [], [], [], []
        for layer in self.layers:
            attention = layer.encoder_attn
            layer_keys = attention.split(attention.k_proj(text))
            layer_values = attention.split(attention.v_proj(text))
            if not fold:
                keys.append(layer_keys)
                values.append(layer_values)
                continue
            query_weight = attention.q_proj.weight.view(heads, head_dim, width)
            folded = torch.einsum("hdi,rhtd->riht", query_weight, layer_keys) * head_dim**-0.5
            scores.append(folded.reshape(rows, width, heads * length))
            output_weight = attention.out_proj.weight.view(width, heads, head_dim)
            outputs.append(
                torch.einsum("rhtd,ohd->rhto", layer_values, output_weight).reshape(rows, -1, width)
            )
        return CrossMemory(keys, values, scores, outputs, None if mask is None else mask.to(self.device))

    def melody_prefix(self, chroma: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The melody model's prefix [rows, chroma_length + T, width] from chroma [rows, frames, 12]
        (projected, then tiled and cut to chroma_length) and projected text [rows, T, width]."""
        chroma = chroma.to(self.device, self.dtype)
        audio = self.audio_enc_to_dec_proj(chroma) if self.audio_enc_to_dec_proj is not None else chroma
        length = self.config.chroma_length
        if audio.shape[1] < length:
            audio = audio.repeat(1, math.ceil(length / audio.shape[1]), 1)
        return torch.cat([audio[:, :length], text], dim=1)

    def embed_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [rows, K, n] (PAD allowed) to summed embeddings [rows, n, width]."""
        total = self.embed_tokens[0](codes[:, 0])
        for codebook in range(1, self.config.num_codebooks):
            total = total + self.embed_tokens[codebook](codes[:, codebook])
        return total * self.embed_scale if self.embed_scale != 1.0 else total

    def forward(
        self,
        codes: torch.Tensor,
        cache: KvCache,
        memory: CrossMemory | None = None,
        prefix: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits of the last position [rows, K, V] (float32) after feeding `codes` [rows, K, n] (and on
        a melody model's first forward the conditioning `prefix` [rows, p, width] before them)."""
        hidden = self.embed_codes(codes)
        if prefix is not None:
            hidden = torch.cat([prefix.to(hidden.dtype), hidden], dim=1)
        hidden = hidden + cache.positions[cache.length : cache.length + hidden.shape[1]]
        for index, layer in enumerate(self.layers):
            hidden = layer(hidden, index, cache, memory)
        cache.length += hidden.shape[1]
        last = self.layer_norm(hidden[:, -1])
        return torch.stack([head(last) for head in self.lm_heads], dim=1).float()


def checkpoint_key(name: str) -> str:
    """The published checkpoint's key for one of our parameter names."""
    if name.startswith("lm_heads."):
        return "decoder." + name
    if name.startswith(("enc_to_dec_proj.", "audio_enc_to_dec_proj.")):
        return name
    return DECODER_PREFIX + name


def load_lm(model_dir: Path, device: str = "cpu", dtype: torch.dtype = torch.float32) -> MusicgenLm:
    """Build the LM from `config.json` and load its weights strictly from the folder's checkpoint
    (CheckpointError names any missing, unexpected or misshapen key); eval mode, no gradients."""
    config = LmConfig.from_model_dir(model_dir)
    with torch.device("meta"):
        model = MusicgenLm(config)
    names = {checkpoint_key(name): name for name in model.state_dict()}
    shapes = {key: tuple(model.state_dict()[name].shape) for key, name in names.items()}
    tensors = read_tensors(model_dir, CHECKPOINT_PREFIXES)
    check_keys(shapes, tensors, "MusicGen LM")
    model.load_state_dict({names[key]: tensor for key, tensor in tensors.items()}, strict=True, assign=True)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)
