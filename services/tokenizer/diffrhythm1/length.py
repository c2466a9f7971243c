"""DiffRhythm v1's length modes: the requested seconds to frames, model size and duration input.

A song is 95 s (the base model, 2048 frames, no duration input) or 96..285 s (the full model,
6144-frame context, `int(seconds * 44100 / 2048)` frames). The model sees the song's duration as
frames / 6144 rounded to float16, as the reference casts it. The generation stage keeps its own copy
of this arithmetic (stages never import each other); both are tested against the fixture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.runtime.errors import InvalidArgumentError

SECONDS_FIELD = "seconds"
SAMPLE_RATE = 44100
SAMPLES_PER_FRAME = 2048
BASE_SECONDS = 95
FULL_SECONDS = (96, 285)
BASE_MAX_FRAMES = 2048
FULL_MAX_FRAMES = 6144
DEFAULT_SECONDS = BASE_SECONDS


@dataclass(frozen=True)
class SongLength:
    """One length mode: the requested `seconds`, the model's context `max_frames`, the song's
    `frames`, and the fp16-rounded `start_time` and `duration` scalars the DiT reads."""

    seconds: int
    max_frames: int
    frames: int
    start_time: float
    duration: float

    @property
    def base_model(self) -> bool:
        """Whether this length is made by the base (95 s) model."""
        return self.max_frames == BASE_MAX_FRAMES


def frame_of(seconds: float) -> int:
    """The latent frame a time falls in, as the reference computes it (multiply, then divide)."""
    return int(seconds * SAMPLE_RATE / SAMPLES_PER_FRAME)


def fp16(value: float) -> float:
    """`value` rounded to float16, as the reference hands its scalars to the model."""
    return float(np.float16(value))


def song_length(seconds: float) -> SongLength:
    """The length mode for `seconds` (0 means 95); INVALID_ARGUMENT on `seconds` outside 95, 96..285."""
    requested = seconds or DEFAULT_SECONDS
    low, high = FULL_SECONDS
    if requested != int(requested) or not (requested == BASE_SECONDS or low <= requested <= high):
        raise InvalidArgumentError(
            SECONDS_FIELD, f"must be {BASE_SECONDS} or a whole number in {low}..{high}, got {seconds:g}"
        )
    whole = int(requested)
    if whole == BASE_SECONDS:
        return SongLength(whole, BASE_MAX_FRAMES, BASE_MAX_FRAMES, 0.0, 1.0)
    frames = min(frame_of(whole), FULL_MAX_FRAMES)
    return SongLength(whole, FULL_MAX_FRAMES, frames, 0.0, fp16(frames / FULL_MAX_FRAMES))
