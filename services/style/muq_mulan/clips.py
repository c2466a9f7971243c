"""How a recording becomes the 10 s clips MuQ-MuLan embeds.

Whole mode follows the reference's clip rule: consecutive full clips, and a remainder is completed
with the start of the recording. The wrap slice cannot run past the end, so a recording shorter than
half a clip gives one clip of twice its length (3 s -> 6 s). Random mode reproduces DiffRhythm 2:
one seeded uniformly placed 10 s window of a longer recording (a shorter one is used whole). Middle
mode reproduces DiffRhythm v1: the 10 s that start 5 s before the middle of the recording, the middle
taken as half its duration rounded down to a whole second.
"""

from __future__ import annotations

import numpy as np


def whole_recording_clips(audio: np.ndarray, clip_samples: int) -> list[np.ndarray]:
    """Every clip of a mono recording, remainder wrapped around to the start."""
    if audio.size == 0:
        raise ValueError("cannot split empty audio into clips")
    starts = range(0, audio.size - clip_samples + 1, clip_samples)
    clips = [audio[start : start + clip_samples] for start in starts]
    covered = len(clips) * clip_samples
    remainder = audio.size - covered
    if remainder > 0:
        clips.append(np.concatenate([audio[covered:], audio[: clip_samples - remainder]]))
    return clips


def random_crop(audio: np.ndarray, clip_samples: int, seed: int) -> np.ndarray:
    """One window of `clip_samples` starting at a seeded uniform offset; shorter audio is returned as is."""
    if audio.size <= clip_samples:
        return audio
    start = int(np.random.default_rng(seed).integers(0, audio.size - clip_samples + 1))
    return audio[start : start + clip_samples]


def middle_crop(audio: np.ndarray, clip_samples: int, sample_rate: int, seconds: float) -> np.ndarray:
    """DiffRhythm v1's excerpt of a recording of `seconds` (at least one clip long): one clip starting
    half a clip before the middle, where the middle is `seconds // 2` (whole seconds, as the reference
    computes it). The end is cut to the decoded samples when resampling left a few less."""
    middle = seconds // 2
    start = round((middle - clip_samples / sample_rate / 2) * sample_rate)
    return audio[start : start + clip_samples]
