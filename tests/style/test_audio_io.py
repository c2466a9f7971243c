"""Decoding reference recordings from bytes: formats, rates, channels, and every rejection."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import soxr

from services.runtime.errors import InvalidArgumentError
from services.style.audio_io import decode_audio

RATE = 24000


def encode(samples: np.ndarray, rate: int, format: str, subtype: str | None = None) -> bytes:
    """`samples` [frames, channels] encoded in memory by libsndfile."""
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=format, subtype=subtype)
    return buffer.getvalue()


def tone(rate: int, seconds: float, frequency: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.4 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[spectrum.argmax()])


@pytest.mark.parametrize(
    ("format", "subtype", "rate"),
    [
        ("WAV", "PCM_16", 44100),
        ("FLAC", "PCM_24", 48000),
        ("MP3", "MPEG_LAYER_III", 44100),
        ("OGG", "VORBIS", 32000),
        ("WAV", "FLOAT", 16000),
    ],
)
def test_stereo_files_at_other_rates_become_24k_mono(format: str, subtype: str, rate: int) -> None:
    left, right = tone(rate, 2.0, 440.0), tone(rate, 2.0, 660.0) * 0.5
    data = encode(np.stack([left, right], axis=1), rate, format, subtype)
    decoded = decode_audio(data, RATE, max_seconds=600)
    assert decoded.samples.dtype == np.float32 and decoded.samples.ndim == 1
    assert decoded.sample_rate == RATE
    assert decoded.seconds == pytest.approx(2.0, abs=0.08)  # MP3 frames pad the end a little
    assert decoded.samples.size == pytest.approx(decoded.seconds * RATE, abs=2)
    middle = decoded.samples[RATE // 2 : RATE // 2 + RATE]
    assert dominant_frequency(middle, RATE) == pytest.approx(440.0, abs=2.0)
    if format in ("WAV", "FLAC"):
        mono = (left + right) / 2
        reference = soxr.resample(mono, rate, RATE)
        np.testing.assert_allclose(decoded.samples, reference, atol=2e-4)


def test_24k_float_wav_is_read_bit_exactly() -> None:
    samples = np.random.default_rng(3).uniform(-1, 1, RATE).astype(np.float32)
    decoded = decode_audio(encode(samples, RATE, "WAV", "FLOAT"), RATE, max_seconds=600)
    np.testing.assert_array_equal(decoded.samples, samples)


def _rejection(data: bytes, max_seconds: float = 600) -> str:
    with pytest.raises(InvalidArgumentError) as caught:
        decode_audio(data, RATE, max_seconds)
    assert [v.field for v in caught.value.violations] == ["data"]
    return caught.value.violations[0].description


def test_rejections() -> None:
    assert "no audio bytes" in _rejection(b"")
    assert "not decodable" in _rejection(b"this is not audio at all" * 100)
    assert "no samples" in _rejection(encode(np.zeros((0, 1), np.float32), RATE, "WAV", "FLOAT"))
    assert "limit is 5 s" in _rejection(encode(tone(8000, 6.0, 200.0), 8000, "WAV", "PCM_16"), max_seconds=5)
    poisoned = tone(RATE, 0.5, 300.0)
    poisoned[100] = np.nan
    assert "NaN or infinite" in _rejection(encode(poisoned, RATE, "WAV", "FLOAT"))
