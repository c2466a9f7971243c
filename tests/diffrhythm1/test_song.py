"""A DiffRhythm v1 song through the three stages' family registries, in process, on the demo model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gateway.audio import peak_normalize_int16
from services.diffusion.diffrhythm1.models import write_demo_generator
from services.diffusion.engine import (
    GeneratedBlock,
    GenerationProgress,
    GenerationRequest,
    GenerationSettings,
)
from services.diffusion.families import GENERATION_FAMILIES
from services.runtime.model_info import MANIFEST_FILE
from services.tokenizer.engine import TokenizerEngine
from services.vocoder.diffrhythm1.models import write_demo_vae
from services.vocoder.engine import VocoderSettings
from services.vocoder.families import VOCODER_FAMILIES

LYRICS = Path(__file__).resolve().parents[1] / "fixtures" / "diffrhythm1-tiny" / "lyrics.lrc"


@pytest.fixture(autouse=True, scope="module")
def single_thread_torch():
    """One intra-op thread: the machine's cores are shared, and spin-waiting OpenMP threads on a busy
    machine make these small models many times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.slow
def test_demo_song_from_lrc_to_int16_stereo(tmp_path: Path) -> None:
    write_demo_generator(tmp_path)
    write_demo_vae(tmp_path)
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert set(manifest["files"]) == {"cfm_model.pt", "config.json", "negative_style.npy", "vae_model.pt"}

    lyrics = TokenizerEngine.load().tokenize(
        LYRICS.read_text(encoding="utf-8"), family="diffrhythm1", seconds=96
    )
    generator = GENERATION_FAMILIES.load(tmp_path, GenerationSettings())
    vocoder = VOCODER_FAMILIES.load(tmp_path, VocoderSettings())
    assert generator.info.family == vocoder.info.family == "diffrhythm1" and vocoder.info.sample_rate == 44100

    style = np.random.default_rng(0).standard_normal(512).astype(np.float32)
    request = GenerationRequest(tokens=np.array(lyrics.tokens), style=style, seed=3, steps=2, seconds=96)
    decoder = vocoder.stream()
    pieces, progress = [], []
    for event in generator.generate(request):
        if isinstance(event, GenerationProgress):
            progress.append(event)
        else:
            assert isinstance(event, GeneratedBlock)
            pieces += decoder.push(event.frames)
    pieces += decoder.finish()
    audio = np.concatenate([piece.samples for piece in pieces], axis=1)
    assert progress == [GenerationProgress(1, 1)]
    assert audio.shape == (2, 2067 * 2048) and np.isfinite(audio).all()
    written = peak_normalize_int16(audio)
    assert written.dtype == np.int16 and np.abs(written).max() == 32767
