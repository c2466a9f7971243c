"""Audio out: streaming encoders give the stored file, fake stereo, loudness normalization."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile
import torch

from gateway.audio import (
    CONTAINERS,
    FakeStereo,
    StreamingEncoder,
    assemble_pieces,
    encode,
    fake_stereo,
    normalize_loudness,
    peak_normalize_int16,
)
from gateway.commands.common import CommandError
from gateway.commands.songs import format_for_output
from gateway.results import MemoryResult
from songsmith.v1 import song_pb2

RATE = 48_000


def _tone(seconds: float, amplitude: float = 0.3) -> np.ndarray:
    """A 440 Hz tone as [1, n] mono PCM."""
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]


@pytest.mark.parametrize("audio_format", list(CONTAINERS), ids=lambda f: CONTAINERS[f].extension)
def test_pieces_written_at_their_offsets_give_the_codec_s_own_file(audio_format: int, tmp_path: Path) -> None:
    """The pieces, each written at its offset, make the file libsndfile writes to disk from the same
    PCM in the same blocks (for Ogg, whose stream serial number is random, the same audio)."""
    audio = _tone(2.5)
    container = CONTAINERS[audio_format]
    encoder = StreamingEncoder(audio_format, RATE, 1)
    reference = tmp_path / f"reference.{container.extension}"
    pieces = []
    with soundfile.SoundFile(
        reference, "w", RATE, 1, format=container.format, subtype=container.subtype
    ) as on_disk:
        for start in range(0, audio.shape[1], 9600):
            block = audio[:, start : start + 9600]
            pieces += encoder.write(block)
            on_disk.write(block.T)
    streamed_before_close = sum(len(data) for _, data in pieces)
    pieces += encoder.close()
    file = assemble_pieces(pieces)
    if container.format == "OGG":
        np.testing.assert_array_equal(soundfile.read(io.BytesIO(file))[0], soundfile.read(reference)[0])
    else:
        assert file == reference.read_bytes()
    assert streamed_before_close > 0, "nothing was streamed before the end"
    decoded, rate = soundfile.read(io.BytesIO(file), dtype="float32")
    assert rate == RATE and abs(len(decoded) - audio.shape[1]) <= 1152


def test_the_encoder_keeps_only_what_it_has_not_handed_out() -> None:
    """Ten minutes of stereo WAV through the encoder: it never holds more than a block's bytes."""
    encoder = StreamingEncoder(song_pb2.AUDIO_FORMAT_WAV, RATE, 2)
    block = np.zeros((2, RATE), np.float32)
    tracemalloc.start()
    try:
        for _ in range(600):
            encoder.write(block)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(len(data) for _, data in encoder.close()) == 44
    assert peak < 4 * block.nbytes, f"{peak / 1e6:.1f} MB held for a 115 MB file"


def test_wav_is_the_pcm_at_16_bits() -> None:
    audio = _tone(1.0)
    decoded, _ = soundfile.read(io.BytesIO(encode(audio, song_pb2.AUDIO_FORMAT_WAV, RATE)), dtype="float32")
    assert np.max(np.abs(decoded - audio[0])) <= 1 / 32768 + 1e-7


def test_fake_stereo_delays_and_scales_the_right_channel() -> None:
    mono = np.random.default_rng(0).uniform(-1, 1, (1, 5000)).astype(np.float32)
    whole = fake_stereo(mono, RATE)
    assert whole.shape == (2, 5000) and whole.dtype == np.float32
    assert np.array_equal(whole[0], mono[0])
    assert np.all(whole[1, :480] == 0)
    assert np.allclose(whole[1, 480:], mono[0, :-480] * 0.8)
    chunked = FakeStereo(RATE)
    pieces = np.concatenate([chunked(mono[:, i : i + 700]) for i in range(0, mono.shape[1], 700)], axis=1)
    assert np.array_equal(pieces, whole)


def test_loudness_is_normalized_to_the_target() -> None:
    quiet = _tone(3.0, amplitude=0.02)
    louder = normalize_loudness(quiet, RATE, -14.0)
    assert louder.shape == quiet.shape
    assert pyloudnorm.Meter(RATE).integrated_loudness(louder[0].astype(np.float64)) == pytest.approx(
        -14.0, abs=0.1
    )
    silence = np.zeros((1, RATE), np.float32)
    assert np.array_equal(normalize_loudness(silence, RATE, -14.0), silence)


def test_format_follows_the_file_extension() -> None:
    assert format_for_output(Path("out/song.FLAC")) == song_pb2.AUDIO_FORMAT_FLAC
    assert {format_for_output(Path(f"a.{c.extension}")) for c in CONTAINERS.values()} == set(CONTAINERS)
    with pytest.raises(CommandError, match="aiff"):
        format_for_output(Path("song.aiff"))


def test_peak_normalisation_as_the_reference() -> None:
    """The DiffRhythm v1 reference's torch arithmetic: divide by the peak, clamp, x 32767, truncate."""
    audio = np.array([[0.5, -0.25, 0.1], [-1.0, 0.2, 0.0]], np.float32) * 0.5
    written = peak_normalize_int16(audio)
    assert (written[1, 0], written[0, 1], written[0, 2]) == (-32767, -8191, 3276)  # truncated toward 0
    song = np.random.default_rng(3).standard_normal((2, 44100)).astype(np.float32) * 0.37
    reference = torch.from_numpy(song)
    expected = (reference / reference.abs().max()).clamp(-1, 1).mul(32767).to(torch.int16).numpy()
    assert np.array_equal(peak_normalize_int16(song), expected)
    assert np.array_equal(peak_normalize_int16(np.zeros((2, 4), np.float32)), np.zeros((2, 4), np.int16))


def test_int16_samples_are_written_to_wav_as_they_are() -> None:
    samples = peak_normalize_int16(np.random.default_rng(4).standard_normal((2, 5000)).astype(np.float32))
    encoder = StreamingEncoder(song_pb2.AUDIO_FORMAT_WAV, 44100, 2)
    file = MemoryResult()
    for pieces in (encoder.write(samples[:, :1234]), encoder.write(samples[:, 1234:]), encoder.close()):
        for offset, data in pieces:
            file.write_at(offset, data)
    read, rate = soundfile.read(io.BytesIO(file.data), dtype="int16")
    assert rate == 44100 and np.array_equal(read.T, samples)
