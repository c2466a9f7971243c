"""MusicGen's style stage: T5 states and melody chroma against the reference, and every refusal."""

from __future__ import annotations

import io
import math

import grpc
import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from services.runtime.errors import InvalidArgumentError
from services.runtime.model_info import MELODY_AUDIO, STYLE_TEXT
from services.style.engine import CROP_RANDOM, StyleLimits
from services.style.musicgen.chroma import ChromaExtractor, ChromaSettings, chroma_filter_bank
from services.style.musicgen.engine import MusicgenStyleEngine
from services.style.musicgen.resample import sinc_resample
from tests.musicgen.conftest import FIXTURES, NAMES


def wav_bytes(samples: np.ndarray, rate: int, file_format: str = "WAV") -> bytes:
    """Encode float samples [n] or [n, channels] as a file in memory."""
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=file_format, subtype="FLOAT" if file_format == "WAV" else None)
    return buffer.getvalue()


@pytest.mark.parametrize("name", NAMES)
def test_text_states_equal_the_reference(name, fixtures, style_engines):
    fixture, engine = fixtures[name], style_engines[name]
    for prompt in fixture.case["prompts"]:
        assert engine.token_ids(prompt["text"]) == prompt["input_ids"]
        states = engine.embed_text(prompt["text"]).vector
        expected = fixture.array(prompt["expected_text_states"])
        assert states.dtype == np.float32 and states.shape == tuple(prompt["shape"])
        assert np.abs(states - expected).max() <= 1e-5


def test_prompt_cache_returns_the_same_states():
    engine = MusicgenStyleEngine.load(FIXTURES / "musicgen-tiny", text_cache_size=4)
    first = engine.embed_text("calm lofi piano, 70 bpm")
    second = engine.embed_text("calm lofi piano, 70 bpm")
    assert not first.cached and second.cached
    np.testing.assert_array_equal(first.vector, second.vector)


def test_chroma_of_the_reference_recording_is_exact(fixtures, style_engines):
    fixture = fixtures["musicgen-melody-tiny"]
    embedding = style_engines["musicgen-melody-tiny"].embed_audio((fixture.folder / "ref.wav").read_bytes())
    np.testing.assert_array_equal(embedding.vector, fixture.array("expected_chroma_ref.npy"))
    assert embedding.vector.dtype == np.float32
    assert embedding.seconds == pytest.approx(2.5)


@pytest.mark.parametrize(("rate", "file_format"), [(44100, "FLAC"), (48000, "WAV"), (22050, "OGG")])
def test_chroma_of_other_rates_and_stereo_files(rate, file_format, fixtures, style_engines):
    """The same melody at another rate, in stereo and another format: resampled back to 32 kHz by
    the sinc filter and downmixed, its chroma is the reference's."""
    fixture = fixtures["musicgen-melody-tiny"]
    mono, _ = sf.read(fixture.folder / "ref.wav", dtype="float32")
    resampled = soxr.resample(mono, 32000, rate).astype(np.float32)
    stereo = np.stack([resampled, 0.5 * resampled], axis=1)
    chroma = style_engines["musicgen-melody-tiny"].embed_audio(wav_bytes(stereo, rate, file_format)).vector
    np.testing.assert_array_equal(chroma, fixture.array("expected_chroma_ref.npy"))


def test_short_recording_is_padded_to_one_window():
    extractor = ChromaExtractor(ChromaSettings())
    tone = np.sin(2 * np.pi * 440.0 * np.arange(4000) / 32000).astype(np.float32)
    chroma = extractor(tone)
    assert chroma.shape == (1 + 16384 // 4096, 12)
    assert (chroma.sum(axis=1) == 1).all()
    assert set(chroma.argmax(axis=1)) == {9}  # A


def test_long_recording_reads_its_first_30_seconds():
    extractor = ChromaExtractor(ChromaSettings())
    noise = np.random.default_rng(0).standard_normal(32000 * 31).astype(np.float32)
    assert extractor(noise).shape == (1 + 32000 * 30 // 4096, 12)


def _direct_resample(signal: np.ndarray, orig: int, new: int, crossings: int, rolloff: float) -> np.ndarray:
    """Band-limited interpolation evaluated point by point in float64 (an independent formula)."""
    base = min(orig, new) * rolloff
    positions = np.arange(len(signal))
    out = np.zeros(math.ceil(new * len(signal) / orig))
    for j in range(len(out)):
        phase = np.clip((positions / orig - j / new) * base, -crossings, crossings)
        window = np.cos(phase * np.pi / crossings / 2) ** 2
        out[j] = np.dot(np.sinc(phase) * window * base / orig, signal)
    return out


@pytest.mark.parametrize(("orig", "new"), [(441, 320), (3, 2), (1, 2)])
def test_sinc_resampler_matches_the_interpolation_formula(orig, new):
    signal = np.random.default_rng(1).standard_normal(900)
    ours = sinc_resample(torch.from_numpy(signal.astype(np.float32)), orig, new, 24, 0.945).numpy()
    reference = _direct_resample(signal, orig, new, 24, 0.945)
    assert ours.shape == reference.shape
    # The filters are computed in float32 as the reference computes them (phases up to ~300 rad).
    assert np.abs(ours - reference).max() < 1e-4


def test_model_info_names_the_inputs(style_engines):
    assert style_engines["musicgen-tiny"].info.inputs == (STYLE_TEXT,)
    assert style_engines["musicgen-melody-tiny"].info.inputs == (STYLE_TEXT, MELODY_AUDIO)
    info = style_engines["musicgen-tiny"].info
    assert info.family == "musicgen" and len(info.revision) == 64


def assert_invalid(call, field: str) -> InvalidArgumentError:
    """`call()` raises INVALID_ARGUMENT naming `field`."""
    with pytest.raises(InvalidArgumentError) as raised:
        call()
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in raised.value.violations] == [field]
    return raised.value


@pytest.mark.parametrize("prompt", ["", "   "])
def test_empty_prompt_is_refused(prompt, style_engines):
    assert_invalid(lambda: style_engines["musicgen-tiny"].embed_text(prompt), "prompt")


def test_prompt_too_long_for_t5_is_refused():
    engine = MusicgenStyleEngine.load(FIXTURES / "musicgen-tiny", limits=StyleLimits(max_prompt_chars=10_000))
    fits, too_long = " ".join(["drums"] * 511), " ".join(["drums"] * 512)
    assert len(engine.token_ids(fits)) == 512
    error = assert_invalid(lambda: engine.embed_text(too_long), "prompt")
    assert "513 tokens" in error.message


def test_prompt_over_the_character_limit_is_refused():
    engine = MusicgenStyleEngine.load(FIXTURES / "musicgen-tiny", limits=StyleLimits(max_prompt_chars=20))
    assert_invalid(lambda: engine.embed_text("a long description of a song"), "prompt")


def test_text_only_model_refuses_a_melody(fixtures, style_engines):
    data = (fixtures["musicgen-melody-tiny"].folder / "ref.wav").read_bytes()
    assert_invalid(lambda: style_engines["musicgen-tiny"].embed_audio(data), "data")


@pytest.mark.parametrize(
    "data",
    [b"", b"not audio at all", wav_bytes(np.zeros((0, 1), np.float32), 32000)],
    ids=["empty", "garbage", "no-samples"],
)
def test_bad_recordings_are_refused(data, style_engines):
    assert_invalid(lambda: style_engines["musicgen-melody-tiny"].embed_audio(data), "data")


def test_recording_with_nan_is_refused(style_engines):
    samples = np.zeros(32000, np.float32)
    samples[5] = np.nan
    assert_invalid(
        lambda: style_engines["musicgen-melody-tiny"].embed_audio(wav_bytes(samples, 32000)), "data"
    )


def test_too_long_and_too_large_recordings_are_refused():
    limits = StyleLimits(max_audio_seconds=1.0, max_audio_bytes=100_000)
    engine = MusicgenStyleEngine.load(FIXTURES / "musicgen-melody-tiny", limits=limits)
    assert_invalid(lambda: engine.embed_audio(wav_bytes(np.zeros(48000, np.float32), 32000)), "data")
    assert_invalid(lambda: engine.embed_audio(wav_bytes(np.zeros(30000, np.float32), 32000)), "data")


def test_random_crop_is_refused(fixtures, style_engines):
    data = (fixtures["musicgen-melody-tiny"].folder / "ref.wav").read_bytes()
    assert_invalid(
        lambda: style_engines["musicgen-melody-tiny"].embed_audio(data, crop=CROP_RANDOM), "options.crop"
    )


def test_chroma_filter_bank_equals_transformers():
    """Our filter bank (librosa's construction) equals the one transformers' feature extractor uses."""
    from transformers.audio_utils import chroma_filter_bank as reference_bank

    ours = chroma_filter_bank(32000, 16384, 12)
    reference = reference_bank(num_frequency_bins=16384, num_chroma=12, sampling_rate=32000, tuning=0)
    assert ours.shape == (12, 8193)
    np.testing.assert_array_equal(ours, reference)
