"""The generation stage's engine interface: what the servicer (and the gateway in-process) calls.

The `diffusion` service is the generation stage of every family, diffusion or autoregressive: an
engine takes a song's conditioning and yields the song's frames as blocks, plus progress events
where a family has long stretches without a block (a whole-song sampler). Each family implements
`GenerationEngine` in its own package (`services/diffusion/<family>/`) and registers a `Family` in
`services.diffusion.families`; nothing here names a family.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from services.runtime.cancellation import CancellationToken
from services.runtime.model_info import ModelInfo


@dataclass(frozen=True)
class GenerationSettings:
    """How a stage loads its generation engine: device, precision, the longest song it accepts (in
    frames; 0 = the family's default) and the model name to serve under ("" = manifest or folder).

    Families that batch songs (`services.diffusion.batching`) sample at most `max_batch` songs
    together and let `max_queue` more wait to join; past that a song is refused with
    RESOURCE_EXHAUSTED suggesting `retry_after_s`.
    """

    device: str = "cpu"
    dtype: str = "float32"
    max_frames_cap: int = 0
    name: str = ""
    max_batch: int = 8
    max_queue: int = 16
    retry_after_s: float = 1.0


@dataclass(frozen=True)
class GenerationRequest:
    """One song to generate, or the rest of one.

    tokens: lyric token ids (families that read lyrics). style: the style stage's output for the
    prompt, or for the recording in families with one style input. melody: the style stage's output
    for a melody recording (families that take one beside a prompt). steps, cfg_strength,
    max_frames: 0 / None mean the family's default; seconds: the requested length for families that
    generate a fixed length (0 = default). prefix: blocks 0..k-1 of an earlier run of this exact
    request; generation continues at block k and gives the same song. options: the family's own
    typed options (from `Family.parse_options`), None for its defaults.
    """

    job_id: str = ""
    tokens: np.ndarray | None = None
    style: np.ndarray | None = None
    melody: np.ndarray | None = None
    seed: int = 0
    steps: int = 0
    cfg_strength: float | None = None
    max_frames: int = 0
    seconds: float = 0.0
    prefix: Sequence[np.ndarray] = field(default_factory=tuple)
    options: Any = None


@dataclass(frozen=True)
class GeneratedBlock:
    """One finished block of frames: `frames` is [n, channels] (float32 latents, or int64 codes for
    codebook families). `frames_done` counts the song's frames up to the end of this block;
    `max_blocks` bounds the song's block count."""

    index: int
    frames: np.ndarray
    final: bool
    max_blocks: int
    frames_done: int


@dataclass(frozen=True)
class GenerationProgress:
    """Work done between blocks: `step` of `total_steps` (sampler steps, LM steps)."""

    step: int
    total_steps: int


GenerationEvent = GeneratedBlock | GenerationProgress


class GenerationEngine(Protocol):
    """A loaded generative model of one family."""

    info: ModelInfo

    def generate(
        self, request: GenerationRequest, token: CancellationToken | None = None
    ) -> Iterator[GenerationEvent]:
        """Validate `request` at once (InvalidArgumentError naming the proto field), then return the
        iterator that generates: blocks in order as soon as each is final, progress between them.
        `token` is checked at every step."""
        ...

    def warm_up(self) -> None:
        """Run a tiny generation so the first request does not pay for kernel selection."""
        ...
