"""DiffRhythm v1's length modes as the generation stage needs them.

The tokenizer stage computes the same (services/tokenizer/diffrhythm1/length.py; stages never import
each other): 95 s is the base model's 2048 frames; 96..285 s is `int(seconds * 44100 / 2048)` frames
of the full model, whose duration input is frames / 6144 rounded to float16 like the reference's.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 44100
SAMPLES_PER_FRAME = 2048
FRAME_RATE = SAMPLE_RATE / SAMPLES_PER_FRAME
BASE_SECONDS = 95
FULL_SECONDS = (96, 285)


def frame_of(seconds: float) -> int:
    """The latent frame a time falls in, as the reference computes it (multiply, then divide)."""
    return int(seconds * SAMPLE_RATE / SAMPLES_PER_FRAME)


def fp16(value: float) -> float:
    """`value` rounded to float16, as the reference hands its scalars and style vectors to the model."""
    return float(np.float16(value))


def duration_input(frames: int, max_frames: int) -> float:
    """The duration the DiT reads for a song of `frames` in a context of `max_frames`."""
    return fp16(frames / max_frames)
