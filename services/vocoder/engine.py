"""The vocoder stage's engine interface: a song's frames in, its PCM out, streaming.

Every family's decoder (BigVGAN for DiffRhythm 2, the Oobleck VAE for DiffRhythm v1, EnCodec for
MusicGen) implements `VocoderEngine` in its own package (`services/vocoder/<family>/`) and registers
a `Family` in `services.vocoder.families`. PCM is always [channels, samples] float32.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from services.runtime.cancellation import CancellationToken
from services.runtime.model_info import ModelInfo


@dataclass(frozen=True)
class VocoderSettings:
    """How a stage loads its decoder: device, the longest song it accepts in frames (0 = the
    family's default), the model name to serve under ("" = manifest or folder) and how many windows
    of concurrent songs a family that batches (`services.vocoder.batching`) decodes together (0: the
    family's choice for the device)."""

    device: str = "cpu"
    max_frames_cap: int = 0
    name: str = ""
    max_window_batch: int = 0


@dataclass(frozen=True)
class PcmPiece:
    """Final samples of the song, [channels, n] float32, starting at sample `offset` of each channel."""

    offset: int
    samples: np.ndarray


def from_sample(pieces: Iterable[PcmPiece], start: int) -> Iterator[PcmPiece]:
    """The pieces without their samples before `start` (those a resuming client already has)."""
    for piece in pieces:
        skip = start - piece.offset
        if skip <= 0:
            yield piece
        elif skip < piece.samples.shape[1]:
            yield PcmPiece(start, piece.samples[:, skip:])


class StreamDecoder(Protocol):
    """Decodes one song whose frames arrive in pieces. Concatenated, the pieces equal the engine's
    one-shot `decode` of all the frames."""

    emitted_samples: int

    def skip_to(self, sample: int) -> None:
        """The caller already has the song's samples before `sample` (a resumed decode, which pushes
        the song's frames again from the start): a decoder may leave out the work that makes only
        those samples. Called before the first push. The pieces may still begin before `sample`
        (the servicer drops what the caller has); the samples from `sample` on are the same."""
        ...

    def push(self, frames: np.ndarray) -> list[PcmPiece]:
        """Add the next frames ([n, channels]); return the PCM that can no longer change."""
        ...

    def finish(self) -> list[PcmPiece]:
        """The song has no more frames: return everything not yet returned."""
        ...


class VocoderEngine(Protocol):
    """A loaded decoder of one family."""

    info: ModelInfo

    def stream(self, token: CancellationToken | None = None) -> StreamDecoder:
        """A decoder for one song; `token` is checked before each window."""
        ...

    def decode(
        self, frames: np.ndarray, token: CancellationToken | None = None, options: Any = None
    ) -> np.ndarray:
        """The reference decode of a whole song: [n, channels] frames to [channels, samples].
        `options` are the family's own (e.g. whole or chunked decoding), None for its defaults."""
        ...

    def encode_recording(self, data: bytes, token: CancellationToken | None = None) -> np.ndarray:
        """The frames [n, channels] of an encoded recording (WAV, FLAC, MP3 or OGG, any rate and
        channel count) that the generation stage continues or edits; INVALID_ARGUMENT on `data` for
        a recording it cannot take, FailedPreconditionError for a decoder without an encoder."""
        ...

    def warm_up(self) -> None:
        """Decode one small window so the first request does not pay for kernel selection."""
        ...
