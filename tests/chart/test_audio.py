"""The audio front end: decoding, down-mixing, resampling length, latent length, and bad songs."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile

from services.chart.mug.audio import decode_song, latent_length, prepare_song, resample
from services.runtime.errors import InvalidArgumentError


def _wav(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("frames", "length"), [(776, 32), (2047, 32), (2048, 64), (32767, 512), (32768, 544)]
)
def test_latent_length_is_the_next_multiple_of_32_strictly_above(frames: int, length: int) -> None:
    assert latent_length(frames, 64) == length


@pytest.mark.parametrize(("count", "source"), [(216000, 48000), (44101, 44100), (1, 8000), (12345, 16000)])
def test_resampled_length_is_ceil_of_the_ratio(count: int, source: int) -> None:
    out = resample(np.zeros(count, np.float32), source, 22050)
    assert out.dtype == np.float32 and len(out) == -(-count * 22050 // source)


def test_stereo_is_averaged_in_float32(engine) -> None:
    left, right = np.full(22050, 0.25, np.float32), np.full(22050, -0.75, np.float32)
    song = prepare_song(np.stack([left, right]), 22050, engine.config.audio, "pcm", 10)
    np.testing.assert_array_equal(song, np.full(22050, -0.25, np.float32))
    int16 = prepare_song(np.full((1, 100), 16384, np.int16), 22050, engine.config.audio, "pcm", 10)
    np.testing.assert_array_equal(int16, np.full(100, 0.5, np.float32))


def test_decoded_wav_matches_its_samples() -> None:
    samples = (np.arange(4000, dtype=np.float32) % 200 - 100) / 128
    pcm, rate = decode_song(_wav(samples, 8000), "encoded_audio", 10)
    assert rate == 8000 and pcm.shape == (1, 4000)
    np.testing.assert_allclose(pcm[0], samples, atol=1 / 32768)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "no audio bytes"),
        (b"RIFF not really a wave file", "not decodable"),
        (_wav(np.zeros((0, 1), np.float32), 8000), "no samples"),
        (_wav(np.zeros(8000 * 3, np.float32), 8000), "limit is 2 s"),
    ],
    ids=["empty", "unreadable", "no_samples", "too_long"],
)
def test_bad_encoded_audio(data: bytes, words: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        decode_song(data, "encoded_audio", 2.0)
    assert caught.value.violations[0].field == "encoded_audio" and words in caught.value.message


@pytest.mark.parametrize(
    ("samples", "rate", "field", "words"),
    [
        (np.zeros((1, 0), np.float32), 22050, "pcm", "no samples"),
        (np.zeros((1, 22050 * 3), np.float32), 22050, "pcm", "limit is 2 s"),
        (np.full((1, 10), np.nan, np.float32), 22050, "pcm", "NaN"),
        (np.zeros((2, 2, 2), np.float32), 22050, "pcm", "PCM must be"),
        (np.zeros((1, 10), np.float64), 22050, "pcm", "float32 or int16"),
        (np.zeros((1, 10), np.float32), 0, "options.pcm_sample_rate", "positive"),
    ],
)
def test_bad_pcm(engine, samples: np.ndarray, rate: int, field: str, words: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        prepare_song(samples, rate, engine.config.audio, "pcm", 2.0)
    assert caught.value.violations[0].field == field and words in caught.value.message
