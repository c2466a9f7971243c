"""Reading an uploaded recording (a reference song, a prompt to continue) into float samples.

Shared by every encoder so each family reports the same errors on the same field for an empty,
oversized, overlong or undecodable file.
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
class RecordingLimits:
    """What an encoder accepts: at most `max_bytes` of file and `max_seconds` of audio."""

    max_bytes: int
    max_seconds: float


UNDECODABLE = "not decodable as WAV, FLAC, MP3 or OGG audio"


def decode_problem(error: Exception) -> str:
    """What a caller may read about a recording the decoder refused: libsndfile's own reason
    ("Format not recognised."), never the exception's text, which names in-memory file objects."""
    reason = getattr(error, "error_string", "")
    return f"{UNDECODABLE} ({reason.rstrip('.')})" if reason else UNDECODABLE


def read_recording(
    data: bytes, limits: RecordingLimits, sample_rate: int, field: str = DATA_FIELD
) -> np.ndarray:
    """The recording in `data` (WAV, FLAC, MP3 or OGG; any rate and channel count) as float32
    [channels, n] at `sample_rate`; InvalidArgumentError naming `field` when it is empty, too large,
    too long, undecodable or holds no samples. The length is checked from the header, before decoding."""
    if not data:
        raise InvalidArgumentError(field, "no audio bytes were sent")
    if len(data) > limits.max_bytes:
        raise InvalidArgumentError(field, f"the file has {len(data)} bytes; the limit is {limits.max_bytes}")
    try:
        with sf.SoundFile(io.BytesIO(data)) as reader:
            rate = reader.samplerate
            if reader.frames > limits.max_seconds * rate:
                raise InvalidArgumentError(field, f"a recording may last at most {limits.max_seconds:g} s")
            samples = reader.read(dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError) as exc:
        raise InvalidArgumentError(field, decode_problem(exc)) from exc
    if samples.shape[0] == 0:
        raise InvalidArgumentError(field, "the recording holds no samples")
    if not np.isfinite(samples).all():
        raise InvalidArgumentError(field, "the recording contains NaN or infinite samples")
    if rate != sample_rate:
        samples = soxr.resample(samples, rate, sample_rate)
    return np.ascontiguousarray(samples.T, dtype=np.float32)
