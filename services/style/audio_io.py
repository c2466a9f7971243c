"""Decode a reference recording sent as file bytes into float32 samples.

soundfile (libsndfile) reads WAV, FLAC, MP3 and OGG from memory (`read_audio`); `decode_audio`
then averages the channels and resamples to the model rate with soxr (a family with its own
resampler reads with `read_audio` and resamples itself). The duration cap is checked from the
header before the samples are decoded, so an over-long file costs almost nothing.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from services.runtime.errors import InvalidArgumentError

DATA_FIELD = "data"


@dataclass(frozen=True)
class DecodedAudio:
    """Mono samples at `sample_rate` and the recording's duration in seconds."""

    samples: np.ndarray
    sample_rate: int
    seconds: float


def read_audio(data: bytes, max_seconds: float) -> tuple[np.ndarray, int]:
    """Decode encoded audio bytes to float32 samples [samples, channels] at the file's own rate;
    INVALID_ARGUMENT on field `data` when the bytes are empty or undecodable, the recording holds no
    samples, lasts longer than `max_seconds` (checked from the header, before decoding), or holds
    NaN/infinite samples."""
    if not data:
        raise InvalidArgumentError(DATA_FIELD, "no audio bytes were sent")
    try:
        with sf.SoundFile(io.BytesIO(data)) as reader:
            source_rate, frames = reader.samplerate, reader.frames
            if frames <= 0 or source_rate <= 0:
                raise InvalidArgumentError(DATA_FIELD, "the recording holds no samples")
            seconds = frames / source_rate
            if seconds > max_seconds:
                raise InvalidArgumentError(
                    DATA_FIELD, f"the recording lasts {seconds:.1f} s; the limit is {max_seconds:g} s"
                )
            samples = reader.read(dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError) as exc:
        raise InvalidArgumentError(
            DATA_FIELD, f"not decodable as WAV, FLAC, MP3 or OGG audio ({exc})"
        ) from exc
    if samples.shape[0] == 0:
        raise InvalidArgumentError(DATA_FIELD, "the recording holds no samples")
    if not np.isfinite(samples).all():
        raise InvalidArgumentError(DATA_FIELD, "the recording holds NaN or infinite samples")
    return samples, source_rate


def decode_audio(data: bytes, sample_rate: int, max_seconds: float) -> DecodedAudio:
    """Decode encoded audio bytes to mono float32 at `sample_rate` (channels averaged, soxr
    resampling); INVALID_ARGUMENT on field `data` as `read_audio` says."""
    samples, source_rate = read_audio(data, max_seconds)
    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    if source_rate != sample_rate:
        mono = soxr.resample(mono, source_rate, sample_rate).astype(np.float32, copy=False)
    return DecodedAudio(np.ascontiguousarray(mono), sample_rate, samples.shape[0] / source_rate)
