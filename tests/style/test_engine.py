"""Engine behaviour beyond parity: crop modes, the prompt cache, limits and cancellation."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from services.runtime.cancellation import CancellationToken
from services.runtime.errors import CancelledError, InvalidArgumentError
from services.style.engine import StyleLimits
from services.style.muq_mulan.engine import StyleEngine
from tests.style.conftest import FIXTURE, expected

SYNTH = FIXTURE / "audio" / "clip_c_synth.wav"
CHORD = FIXTURE / "audio" / "clip_a_chord.wav"


def variant(engine: StyleEngine, cache: int = 0, **limits) -> StyleEngine:
    """The session's loaded model behind other limits or another cache size."""
    return StyleEngine(engine.loaded, StyleLimits(**limits), cache, "cpu")


def violation(exc: InvalidArgumentError) -> tuple[str, str]:
    assert len(exc.violations) == 1
    return exc.violations[0].field, exc.violations[0].description


def test_random_crop_is_seeded_and_embeds_one_window(engine: StyleEngine) -> None:
    data = SYNTH.read_bytes()
    first = engine.embed_audio(data, crop="random", seed=7)
    again = engine.embed_audio(data, crop="random", seed=7)
    other = engine.embed_audio(data, crop="random", seed=8)
    assert (first.clips, first.seconds) == (1, pytest.approx(25.0))
    np.testing.assert_array_equal(first.vector, again.vector)
    assert not np.allclose(first.vector, other.vector, atol=1e-4)
    assert np.linalg.norm(first.vector) == pytest.approx(1.0, abs=1e-6)

    wave, _ = sf.read(SYNTH, dtype="float32")
    start = int(np.random.default_rng(7).integers(0, wave.size - engine.clip_samples + 1))
    window = wave[start : start + engine.clip_samples]
    np.testing.assert_allclose(first.vector, engine.clip_latents([window])[0], atol=1e-6)


def test_whole_mode_is_the_default_and_deterministic(engine: StyleEngine) -> None:
    data = SYNTH.read_bytes()
    first, second = engine.embed_audio(data), engine.embed_audio(data)
    assert first.clips == 3
    np.testing.assert_array_equal(first.vector, second.vector)
    np.testing.assert_allclose(first.vector, expected("audio_clip_c_synth_embedding"), atol=1e-5)


def test_random_crop_of_short_audio_is_the_whole_recording(engine: StyleEngine) -> None:
    data = CHORD.read_bytes()
    cropped = engine.embed_audio(data, crop="random", seed=123)
    np.testing.assert_array_equal(cropped.vector, engine.embed_audio(data).vector)
    assert cropped.clips == 1


@pytest.mark.parametrize(("seconds", "start_s"), [(25.0, 7), (21.7, 5)])
def test_middle_crop_is_the_10_s_from_5_s_before_the_whole_middle_second(
    engine: StyleEngine, seconds: float, start_s: int
) -> None:
    """DiffRhythm v1's reference: middle = duration // 2 (whole seconds), excerpt from middle - 5 s."""
    wave, rate = sf.read(SYNTH, dtype="float32")
    buffer = io.BytesIO()
    sf.write(buffer, wave[: round(seconds * rate)], rate, format="WAV", subtype="FLOAT")
    cropped = engine.embed_audio(buffer.getvalue(), crop="middle")
    assert (cropped.clips, cropped.seconds) == (1, pytest.approx(seconds))
    window = wave[start_s * rate : start_s * rate + engine.clip_samples]
    np.testing.assert_allclose(cropped.vector, engine.clip_latents([window])[0], atol=1e-6)


def test_middle_crop_refuses_a_recording_under_10_s(engine: StyleEngine) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        engine.embed_audio(CHORD.read_bytes(), crop="middle")
    field, description = violation(caught.value)
    assert field == "data" and "the recording is 3.00 s" in description and "at least 10 s" in description


def test_prompt_cache_hits_and_evicts_least_recently_used(engine: StyleEngine) -> None:
    cached = variant(engine, cache=2)
    first = cached.embed_text("lofi hip hop")
    hit = cached.embed_text("lofi hip hop")
    assert (first.cached, hit.cached) == (False, True)
    np.testing.assert_array_equal(first.vector, hit.vector)
    hit.vector[:] = 0  # callers get copies: the cache is not changed through them
    np.testing.assert_array_equal(cached.embed_text("lofi hip hop").vector, first.vector)

    cached.embed_text("metal")
    cached.embed_text("lofi hip hop")  # now most recently used
    cached.embed_text("jazz")  # evicts "metal"
    assert cached.embed_text("lofi hip hop").cached
    assert not cached.embed_text("metal").cached
    assert len(cached.text_cache) == 2
    assert variant(engine, cache=0).embed_text("jazz").cached is False


def test_prompt_limits(engine: StyleEngine) -> None:
    limited = variant(engine, max_prompt_chars=20)
    with pytest.raises(InvalidArgumentError) as caught:
        limited.embed_text("")
    assert violation(caught.value) == ("prompt", "the prompt is empty")
    with pytest.raises(InvalidArgumentError) as caught:
        limited.embed_text("x" * 21)
    assert violation(caught.value) == ("prompt", "the prompt has 21 characters; the limit is 20")
    assert limited.embed_text("x" * 20).vector.shape == (512,)
    with pytest.raises(InvalidArgumentError) as caught:
        engine.embed_text("静" * 900)
    field, description = violation(caught.value)
    assert field == "prompt" and "the text model accepts at most 512" in description


def test_audio_byte_cap_and_cancellation(engine: StyleEngine) -> None:
    data = CHORD.read_bytes()
    with pytest.raises(InvalidArgumentError) as caught:
        variant(engine, max_audio_bytes=len(data) - 1).embed_audio(data)
    assert violation(caught.value)[0] == "data"
    token = CancellationToken()
    token.cancel()
    with pytest.raises(CancelledError):
        engine.embed_audio(data, token=token)
    with pytest.raises(InvalidArgumentError) as caught:
        engine.embed_audio(data, crop="sideways")
    assert violation(caught.value)[0] == "options.crop"
