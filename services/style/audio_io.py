"""Decode a recording sent as file bytes into mono float32 samples.

soundfile (libsndfile) reads WAV, FLAC, MP3 and OGG from memory; channels are averaged and soxr
resamples to the model rate (`decode_audio`), or the samples stay at the file's own rate for a
family with a resampler of its own (`read_mono`). The limits on sample rate, channel count and
duration are checked from the header before anything is decoded, so a hostile file costs almost
nothing; libsndfile decodes no more frames than the header declares (a test holds it to that).
Decoding runs in blocks of about a million samples that are mixed to mono and resampled as they come
(soxr's stream gives the same samples as one call), so memory follows the decoded recording at the
model rate, never the source's rate times its channels: a 590 s FLAC of silence at 655,350 Hz is 1.4
MB on the wire and would be 1.5 GB of float32.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from services.runtime.errors import InvalidArgumentError
from services.runtime.recording import decode_problem
from services.style.engine import StyleLimits

DATA_FIELD = "data"
BLOCK_SAMPLES = 1 << 20  # decoded per read, over all channels
# Full scale is ±1; a float file may overshoot a little, but values far beyond only overflow the model.
MAX_SAMPLE_MAGNITUDE = 100.0


@dataclass(frozen=True)
class DecodedAudio:
    """Mono samples at `sample_rate` and the recording's duration in seconds."""

    samples: np.ndarray
    sample_rate: int
    seconds: float


def decode_audio(data: bytes, sample_rate: int, limits: StyleLimits) -> DecodedAudio:
    """Decode encoded audio bytes to mono float32 at `sample_rate`; INVALID_ARGUMENT on field `data`
    when the bytes are empty or undecodable, hold no samples, exceed one of `limits` (the message
    names the limit: sample rate, channels, duration), or hold NaN, infinite or out-of-range samples."""
    if not data:
        raise InvalidArgumentError(DATA_FIELD, "no audio bytes were sent")
    try:
        with sf.SoundFile(io.BytesIO(data)) as reader:
            _check_header(reader, limits)
            samples, frames = _read_mono(reader, sample_rate)
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError) as exc:
        raise InvalidArgumentError(DATA_FIELD, decode_problem(exc)) from exc
    return DecodedAudio(samples, sample_rate, frames / reader.samplerate)


def read_mono(data: bytes, limits: StyleLimits, max_read_seconds: float) -> DecodedAudio:
    """Mono float32 at the file's own rate, for a family that resamples itself, with the checks of
    `decode_audio`; only the first `max_read_seconds` are decoded (a family that reads only the start
    of a recording), while `seconds` is the whole recording's duration."""
    if not data:
        raise InvalidArgumentError(DATA_FIELD, "no audio bytes were sent")
    try:
        with sf.SoundFile(io.BytesIO(data)) as reader:
            _check_header(reader, limits)
            source_rate, duration = reader.samplerate, reader.frames / reader.samplerate
            samples, _ = _read_mono(reader, None, round(max_read_seconds * source_rate))
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError) as exc:
        raise InvalidArgumentError(DATA_FIELD, decode_problem(exc)) from exc
    return DecodedAudio(samples, source_rate, duration)


def _check_header(reader: sf.SoundFile, limits: StyleLimits) -> None:
    """Refuse, before decoding, a recording whose header breaks a limit, naming the limit."""
    if reader.frames <= 0 or reader.samplerate <= 0:
        raise InvalidArgumentError(DATA_FIELD, "the recording holds no samples")
    if reader.samplerate > limits.max_audio_sample_rate:
        raise InvalidArgumentError(
            DATA_FIELD,
            f"the recording's sample rate is {reader.samplerate} Hz; "
            f"the sample-rate limit is {limits.max_audio_sample_rate} Hz",
        )
    if reader.channels > limits.max_audio_channels:
        raise InvalidArgumentError(
            DATA_FIELD,
            f"the recording has {reader.channels} channels; the channel limit is {limits.max_audio_channels}",
        )
    seconds = reader.frames / reader.samplerate
    if seconds > limits.max_audio_seconds:
        raise InvalidArgumentError(
            DATA_FIELD,
            f"the recording lasts {seconds:.1f} s; the duration limit is {limits.max_audio_seconds:g} s",
        )


def _read_mono(
    reader: sf.SoundFile, sample_rate: int | None, max_frames: int | None = None
) -> tuple[np.ndarray, int]:
    """Decode block by block into mono at `sample_rate` (None: the file's own rate), stopping after
    `max_frames` source frames when given; return the samples and the source frames read."""
    source_rate = reader.samplerate
    resampler = (
        soxr.ResampleStream(source_rate, sample_rate, 1, dtype="float32")
        if sample_rate is not None and source_rate != sample_rate
        else None
    )
    block_frames = max(1, BLOCK_SAMPLES // reader.channels)
    pieces: list[np.ndarray] = []
    frames = 0
    while max_frames is None or frames < max_frames:
        wanted = block_frames if max_frames is None else min(block_frames, max_frames - frames)
        samples = reader.read(wanted, dtype="float32", always_2d=True)
        if len(samples) == 0:
            break
        frames += len(samples)
        if not np.isfinite(samples).all():
            raise InvalidArgumentError(DATA_FIELD, "the recording holds NaN or infinite samples")
        if np.abs(samples).max() > MAX_SAMPLE_MAGNITUDE:
            raise InvalidArgumentError(
                DATA_FIELD, f"the recording holds samples beyond ±{MAX_SAMPLE_MAGNITUDE:g} (full scale is ±1)"
            )
        mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
        pieces.append(mono if resampler is None else resampler.resample_chunk(mono))
    if frames == 0:
        raise InvalidArgumentError(DATA_FIELD, "the recording holds no samples")
    if resampler is not None:
        pieces.append(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
    return np.ascontiguousarray(np.concatenate(pieces), dtype=np.float32), frames
