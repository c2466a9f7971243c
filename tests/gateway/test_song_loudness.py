"""The loudness of the file a song is written to (issue 18, item 11): `--stereo --normalize` reaches
the target on the final two channels (it measured -11.85 LUFS for -14, the mono having been normalized
before the fake right channel was added), and a loud target is reached with a true-peak limiter
instead of hard clipping at full scale."""

from __future__ import annotations

import io

import numpy as np
import pyloudnorm
import pytest
import soundfile
from scipy import signal

from gateway.pipeline import SongSpec, SongWriter
from gateway.results import MemoryResult
from songsmith.v1 import song_pb2

RATE = 48_000
BLOCK = 9600  # the vocoder's samples per latent frame


def _spec(stereo: bool, target_lufs: float, audio_format: int = song_pb2.AUDIO_FORMAT_WAV) -> SongSpec:
    return SongSpec(
        job_id="loudness",
        model="",
        lyrics="",
        style_prompt="",
        style_audio=None,
        seed=0,
        steps=16,
        cfg_strength=2.0,
        max_seconds=10.0,
        audio_format=audio_format,
        stereo=stereo,
        normalize_loudness=True,
        target_lufs=target_lufs,
    )


def _written(spec: SongSpec, mono: np.ndarray) -> tuple[np.ndarray, bytes]:
    """Feed [1, n] PCM through the song writer in vocoder-sized pieces; the file the client gets
    (every emitted piece written at its offset) decoded to [n, channels], and its bytes."""
    events: list[song_pb2.SongEvent] = []
    output = MemoryResult()
    writer = SongWriter(spec, RATE, 1, events.append, output=output)
    for start in range(0, mono.shape[1], BLOCK):
        writer.add(mono[:, start : start + BLOCK])
    writer.finish()
    stored = output.data
    file = bytearray()
    for event in events:
        offset, data = event.audio.offset, event.audio.data
        file[offset : offset + len(data)] = data if offset <= len(file) else bytes(offset - len(file)) + data
    assert bytes(file) == stored
    audio, rate = soundfile.read(io.BytesIO(stored), dtype="float64", always_2d=True)
    assert rate == RATE
    return audio, stored


def _music(seconds: float, level: float, seed: int = 0) -> np.ndarray:
    """[1, n] chords with a slow swell and noise bursts: a crest factor like a song's."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    chords = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (110.0, 220.0, 277.2, 329.6, 440.0))
    swell = 0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t)
    bursts = rng.standard_normal(t.size) * (np.sin(2 * np.pi * 2 * t) > 0.9)
    mix = chords * swell / 5 + 0.5 * bursts
    return (level * mix / np.abs(mix).max()).astype(np.float32)[None]


def _true_peak_dbtp(audio: np.ndarray) -> float:
    """The file's true peak: every channel oversampled 4x (BS.1770), independently of the writer."""
    up = signal.resample_poly(audio, 4, 1, axis=0)
    return float(20 * np.log10(np.abs(up).max()))


@pytest.mark.parametrize("stereo", [True, False], ids=["stereo", "mono"])
def test_the_written_file_measures_the_target_loudness(stereo: bool) -> None:
    audio, _ = _written(_spec(stereo, -14.0), _music(8.0, level=0.25))
    assert audio.shape[1] == (2 if stereo else 1)
    assert pyloudnorm.Meter(RATE).integrated_loudness(audio) == pytest.approx(-14.0, abs=0.2)


def test_a_loud_target_is_limited_not_clipped() -> None:
    """-9 LUFS needs about 8 dB more than the peaks allow: the limiter takes the peaks down smoothly,
    no sample reaches full scale, and the true peak stays at the -1 dBTP ceiling."""
    audio, _ = _written(_spec(True, -9.0), _music(8.0, level=0.25, seed=1))
    assert pyloudnorm.Meter(RATE).integrated_loudness(audio) == pytest.approx(-9.0, abs=0.2)
    assert np.abs(audio).max() < 10 ** (-0.95 / 20)
    assert np.count_nonzero(np.abs(audio) >= 32767 / 32768) == 0
    assert _true_peak_dbtp(audio) <= -0.9
