"""Decoding reference recordings from bytes: formats, rates, channels, every rejection, and memory that
follows the decoded recording at the model rate, not the source (issue 18, item 7)."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import soxr

from services.runtime.errors import InvalidArgumentError
from services.style.audio_io import decode_audio
from services.style.engine import StyleLimits

RATE = 24000
LIMITS = StyleLimits()
MIB = 1 << 20


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
    decoded = decode_audio(data, RATE, LIMITS)
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
    decoded = decode_audio(encode(samples, RATE, "WAV", "FLOAT"), RATE, LIMITS)
    np.testing.assert_array_equal(decoded.samples, samples)


def _rejection(data: bytes, limits: StyleLimits = LIMITS) -> str:
    with pytest.raises(InvalidArgumentError) as caught:
        decode_audio(data, RATE, limits)
    assert [v.field for v in caught.value.violations] == ["data"]
    return caught.value.violations[0].description


def test_rejections() -> None:
    assert "no audio bytes" in _rejection(b"")
    assert "not decodable" in _rejection(b"this is not audio at all" * 100)
    assert "no samples" in _rejection(encode(np.zeros((0, 1), np.float32), RATE, "WAV", "FLOAT"))
    five_seconds = StyleLimits(max_audio_seconds=5)
    assert "duration limit is 5 s" in _rejection(
        encode(tone(8000, 6.0, 200.0), 8000, "WAV", "PCM_16"), five_seconds
    )
    poisoned = tone(RATE, 0.5, 300.0)
    poisoned[100] = np.nan
    assert "NaN or infinite" in _rejection(encode(poisoned, RATE, "WAV", "FLOAT"))
    assert "beyond ±100" in _rejection(encode(np.full(RATE, 1e30, np.float32), RATE, "WAV", "FLOAT"))


def _silence_file(rate: int, seconds: float, channels: int, format: str = "FLAC") -> bytes:
    """`seconds` of silence, written a block at a time so the test itself stays small."""
    buffer = io.BytesIO()
    block = np.zeros((rate, channels), np.int16)
    with sf.SoundFile(buffer, "w", rate, channels, format=format, subtype="PCM_16") as writer:
        for start in range(0, int(rate * seconds), rate):
            writer.write(block[: int(rate * seconds) - start])
    return buffer.getvalue()


def _peak_traced_bytes(work) -> int:
    """The most memory numpy and Python held at once while `work` ran (numpy reports to tracemalloc)."""
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_each_limit_names_itself() -> None:
    assert "sample-rate limit is 192000 Hz" in _rejection(_silence_file(655_350, 2, 1))
    nine_channels = encode(np.zeros((RATE, 9), np.float32), RATE, "WAV", "FLOAT")
    assert "channel limit is 8" in _rejection(nine_channels)
    assert "sample-rate limit is 44100 Hz" in _rejection(
        encode(tone(48000, 0.5, 440.0), 48000, "WAV", "PCM_16"), StyleLimits(max_audio_sample_rate=44100)
    )


def test_decoding_stops_at_the_length_the_header_declares() -> None:
    """The duration limit is checked on the header alone, so a header that understates the length
    must bound the decoding: a 3 s FLAC whose STREAMINFO says 1 s decodes to 1 s."""
    data = bytearray(encode(tone(8000, 3.0, 200.0), 8000, "FLAC", "PCM_16"))
    assert data[:4] == b"fLaC"
    info = 8 + 10  # STREAMINFO body, then rate (20 bits), channels (3), bits (5), total samples (36)
    packed = int.from_bytes(data[info : info + 8], "big")
    assert packed & ((1 << 36) - 1) == 3 * 8000
    data[info : info + 8] = ((packed >> 36 << 36) | 8000).to_bytes(8, "big")
    decoded = decode_audio(bytes(data), RATE, StyleLimits(max_audio_seconds=2))
    assert decoded.seconds == 1.0 and decoded.samples.shape == (RATE,)


def test_memory_follows_the_output_not_the_source() -> None:
    """30 s at 192 kHz in 8 channels (184 MB as float32) decodes within a few MB beyond its 2.9 MB of
    24 kHz mono output: blocks are mixed down and resampled as they are read."""
    data = _silence_file(192_000, 30, 8)
    decoded: list = []
    peak = _peak_traced_bytes(lambda: decoded.append(decode_audio(data, RATE, LIMITS)))
    assert decoded[0].samples.shape == (30 * RATE,) and decoded[0].seconds == pytest.approx(30.0)
    assert peak < 24 * MIB, f"peak {peak / MIB:.1f} MiB"


def test_blockwise_decode_equals_decoding_at_once() -> None:
    """More than one block (over 2^20 samples), stereo at 44.1 kHz: the same samples as reading the
    whole file, averaging the channels and resampling in one call."""
    rng = np.random.default_rng(5)
    stereo = rng.uniform(-0.5, 0.5, (44100 * 13, 2)).astype(np.float32)
    data = encode(stereo, 44100, "WAV", "FLOAT")
    whole = soxr.resample(stereo.mean(axis=1, dtype=np.float32), 44100, RATE)
    np.testing.assert_array_equal(decode_audio(data, RATE, LIMITS).samples, whole)
