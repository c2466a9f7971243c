"""The one interface the pipeline uses to reach the four stages, whatever the transport.

Two implementations: `gateway.local_stages` (engines in this process: the embedded default) and
`gateway.remote_stages` (gRPC to stage services). Both raise the runtime's typed errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from services.runtime.cancellation import CancellationToken

FRAMES_PER_SECOND = 5
BLOCK_FRAMES = 10


@dataclass(frozen=True)
class LatentRequest:
    """What the diffusion stage needs for one song (and, with `prefix`, where to resume)."""

    job_id: str
    tokens: np.ndarray
    style: np.ndarray
    seed: int
    steps: int
    cfg_strength: float
    max_frames: int
    prefix: Sequence[np.ndarray] = field(default_factory=tuple)


@dataclass(frozen=True)
class LatentBlock:
    """One finished 2 s block: latents float32 [frames, 64]."""

    index: int
    latents: np.ndarray
    final: bool
    max_blocks: int


@dataclass(frozen=True)
class PcmPiece:
    """Final mono samples of the song starting at sample `offset`."""

    offset: int
    samples: np.ndarray


class Stages(Protocol):
    """The four stages as the pipeline sees them."""

    model_name: str
    sample_rate: int

    def tokenize(self, lyrics: str, job_id: str, token: CancellationToken) -> np.ndarray:
        """Lyric token ids, int64 [L]."""
        ...

    def embed_text(self, prompt: str, job_id: str, token: CancellationToken) -> np.ndarray:
        """The style vector of a prompt, float32 [512]."""
        ...

    def embed_audio(self, data: bytes, job_id: str, token: CancellationToken) -> np.ndarray:
        """The style vector of an encoded reference recording (whole recording), float32 [512]."""
        ...

    def generate_latents(self, request: LatentRequest, token: CancellationToken) -> Iterator[LatentBlock]:
        """The song's latent blocks after `request.prefix`, each as soon as it is sampled."""
        ...

    def decode(
        self, blocks: Iterable[np.ndarray], job_id: str, token: CancellationToken
    ) -> Iterator[PcmPiece]:
        """PCM as it becomes final while `blocks` (latents [frames, 64]) arrive."""
        ...

    def close(self) -> None:
        """Release channels or engines."""
        ...
