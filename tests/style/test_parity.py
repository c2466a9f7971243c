"""Parity with the reference muq 0.1.0 outputs in tests/fixtures/muq-mulan-tiny, at case.json's tolerances."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from services.style.muq_mulan.clips import whole_recording_clips
from services.style.muq_mulan.engine import StyleEngine
from tests.style.conftest import FIXTURE, copy_fixture_layout, expected

VECTOR_ATOL = 1e-5
MIN_COSINE = 0.99999


def assert_vectors_close(actual: np.ndarray, reference: np.ndarray) -> None:
    """case.json's vector tolerance: atol 1e-5 and cosine >= 0.99999 row by row."""
    assert actual.shape == reference.shape
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, reference, rtol=0, atol=VECTOR_ATOL)
    rows_a, rows_r = actual.reshape(-1, actual.shape[-1]), reference.reshape(-1, reference.shape[-1])
    cosine = (rows_a * rows_r).sum(-1) / (np.linalg.norm(rows_a, axis=-1) * np.linalg.norm(rows_r, axis=-1))
    assert cosine.min() >= MIN_COSINE


def test_tolerances_are_the_ones_this_file_applies(case: dict[str, Any]) -> None:
    tolerances = case["tolerances"]
    vectors = tolerances["text_batch/text_single/audio embeddings and clip latents"]
    assert (vectors["atol"], vectors["min_cosine"]) == (VECTOR_ATOL, MIN_COSINE)
    assert tolerances["text_xlmr_last_hidden"] == {"atol": 1e-4, "rtol": 1e-5}
    assert tolerances["audio_clip_a_chord_mel_db"]["atol_dB"] == 0.02
    assert tolerances["audio_clip_a_chord_mel_normalized"]["atol"] == 1e-3
    assert tolerances["audio_clip_a_chord_muq_hidden_used"]["atol"] == 2e-4


def test_token_ids_match_exactly(engine: StyleEngine, case: dict[str, Any]) -> None:
    text = case["text"]
    input_ids, attention_mask = engine.tokenize(text["prompts"])
    assert input_ids.tolist() == text["input_ids"]
    assert attention_mask.tolist() == text["attention_mask"]
    for prompt, ids in zip(text["prompts"], text["single_input_ids"], strict=True):
        assert engine.tokenize([prompt])[0].tolist() == [ids]


def test_xlmr_last_hidden_state(engine: StyleEngine, case: dict[str, Any]) -> None:
    input_ids, attention_mask = engine.tokenize(case["text"]["prompts"])
    with torch.inference_mode():
        hidden = engine.model.mulan.text.encode(input_ids, attention_mask).numpy()
    np.testing.assert_allclose(hidden, expected("text_xlmr_last_hidden"), rtol=1e-5, atol=1e-4)


def test_text_single_prompt_calls(engine: StyleEngine, case: dict[str, Any]) -> None:
    vectors = np.stack([engine.embed_text(prompt).vector for prompt in case["text"]["prompts"]])
    assert_vectors_close(vectors, expected("text_single"))


def test_text_batched_call_includes_padding_in_the_mean(engine: StyleEngine, case: dict[str, Any]) -> None:
    batch = engine.embed_texts(case["text"]["prompts"])
    assert_vectors_close(batch, expected("text_batch"))
    assert not np.allclose(batch, expected("text_single"), atol=VECTOR_ATOL)


@pytest.mark.parametrize("clip", ["clip_a_chord", "clip_b_noise_click", "clip_c_synth"])
def test_audio_embedding_and_clip_latents(engine: StyleEngine, case: dict[str, Any], clip: str) -> None:
    info = next(c for c in case["audio"]["clips"] if c["name"] == clip)
    wave, rate = sf.read(FIXTURE / info["wav"], dtype="float32")
    assert (rate, wave.size) == (24000, info["n_samples"])
    clips = whole_recording_clips(wave, engine.clip_samples)
    assert len(clips) == info["n_clips"]
    assert {c.size for c in clips} == {info["clip_len_samples"]}
    assert_vectors_close(engine.clip_latents(clips), expected(f"audio_{clip}_clip_latents"))

    result = engine.embed_audio((FIXTURE / info["wav"]).read_bytes())
    assert result.clips == info["n_clips"]
    assert result.seconds == pytest.approx(info["seconds"])
    assert_vectors_close(result.vector, expected(f"audio_{clip}_embedding"))


def test_first_clip_intermediates(engine: StyleEngine) -> None:
    wave, _ = sf.read(FIXTURE / "audio" / "clip_a_chord.wav", dtype="float32")
    clip = whole_recording_clips(wave, engine.clip_samples)[0]
    np.testing.assert_array_equal(clip[None], expected("audio_clip_a_chord_clip_wave"))
    muq = engine.model.mulan.audio.model.model
    x = torch.from_numpy(clip)[None]
    with torch.inference_mode():
        mel_db = muq.front_end.decibels(x).numpy()
        mel = muq.front_end(x).numpy()
        hidden = muq.hidden_state(x, -1).numpy()
    assert mel_db.shape == expected("audio_clip_a_chord_mel_db").shape
    np.testing.assert_allclose(mel_db, expected("audio_clip_a_chord_mel_db"), rtol=0, atol=0.02)
    np.testing.assert_allclose(mel, expected("audio_clip_a_chord_mel_normalized"), rtol=0, atol=1e-3)
    assert hidden.shape == expected("audio_clip_a_chord_muq_hidden_used").shape
    np.testing.assert_allclose(hidden, expected("audio_clip_a_chord_muq_hidden_used"), rtol=0, atol=2e-4)
    assert muq.config.encoder_depth + 1 == int(expected("audio_clip_a_chord_muq_n_hidden_states")[0])


def test_pytorch_model_bin_gives_the_same_vectors(tmp_path, case: dict[str, Any]) -> None:
    checkpoint = copy_fixture_layout(tmp_path, weights=("pytorch_model.bin",))
    from_bin = StyleEngine.load(checkpoint, text_cache_size=0)
    assert from_bin.loaded.weights_file.name == "pytorch_model.bin"
    vectors = np.stack([from_bin.embed_text(prompt).vector for prompt in case["text"]["prompts"]])
    assert_vectors_close(vectors, expected("text_single"))
    audio = from_bin.embed_audio((FIXTURE / "audio" / "clip_b_noise_click.wav").read_bytes())
    assert_vectors_close(audio.vector, expected("audio_clip_b_noise_click_embedding"))
