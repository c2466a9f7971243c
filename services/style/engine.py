"""The style stage's engine interface: a prompt or a recording in, the family's conditioning out.

What "style" is depends on the family: a 512-d MuQ-MuLan vector (DiffRhythm 2 and v1), T5 encoder
states [tokens, d] for a MusicGen prompt, a one-hot chroma [frames, 12] for a MusicGen melody
recording. Each family implements `StyleEngine` in its own package (`services/style/<family>/`) and
registers a `Family` in `services.style.families`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from services.runtime.cancellation import CancellationToken
from services.runtime.config import MIB
from services.runtime.model_info import ModelInfo

CROP_WHOLE = "whole"
CROP_RANDOM = "random"
CROP_MIDDLE = "middle"
# How a recording becomes one embedding: all of it, one seeded random 10 s window (DiffRhythm 2's
# reference), or the 10 s around its middle (DiffRhythm v1's reference).
CropMode = Literal["whole", "random", "middle"]


@dataclass(frozen=True)
class StyleLimits:
    """Input bounds; requests beyond them get INVALID_ARGUMENT naming the limit. The recording's
    sample rate, channel count and duration are read from its header and checked before decoding."""

    max_prompt_chars: int = 1000
    max_audio_seconds: float = 600.0
    max_audio_bytes: int = 32 * MIB
    max_audio_sample_rate: int = 192_000
    max_audio_channels: int = 8


@dataclass(frozen=True)
class StyleSettings:
    """How a stage loads its style engine: device, input limits, prompt cache size, where sub-models
    may be found besides the model folder, and the model name to serve under ("" = manifest or folder)."""

    device: str = "cpu"
    limits: StyleLimits = StyleLimits()
    text_cache_size: int = 1024
    hub_cache_dir: str | None = None
    name: str = ""


@dataclass(frozen=True)
class Embedding:
    """A style stage result: `vector` in the family's shape, float32; for text whether it came from
    the prompt cache; for audio how many clips were combined and the recording's duration."""

    vector: np.ndarray
    cached: bool = False
    clips: int = 0
    seconds: float = 0.0


class StyleEngine(Protocol):
    """A loaded style model of one family."""

    info: ModelInfo
    limits: StyleLimits

    def embed_text(self, prompt: str) -> Embedding:
        """The conditioning for a prompt; INVALID_ARGUMENT on `prompt` when it is empty or too long."""
        ...

    def embed_audio(
        self, data: bytes, crop: CropMode = CROP_WHOLE, seed: int = 0, token: CancellationToken | None = None
    ) -> Embedding:
        """The conditioning for an encoded recording; INVALID_ARGUMENT on `data` when it is empty,
        undecodable or over a limit, on `options.crop` for a crop the family does not offer."""
        ...

    def warm_up(self) -> None:
        """Run the text and audio paths once so the first request is not slow."""
        ...
