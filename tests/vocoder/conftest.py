"""Shared fixtures for the vocoder tests: the reference fixture folder and a loaded engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from services.vocoder.diffrhythm2.engine import VocoderEngine

FIXTURE_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "diffrhythm2-tiny"


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    """The tiny DiffRhythm 2 decoder in the published layout, with the reference outputs."""
    return FIXTURE_DIR


@pytest.fixture(scope="session")
def engine() -> VocoderEngine:
    """The fixture decoder loaded by our own loader."""
    return VocoderEngine.load(FIXTURE_DIR)


@pytest.fixture(scope="session")
def reference_latents() -> np.ndarray:
    """The latents [30, 64] the reference decoded into expected_audio.npy."""
    return np.load(FIXTURE_DIR / "expected_latents.npy")


@pytest.fixture(autouse=True, scope="module")
def single_thread_torch():
    """Run the decoder on one intra-op thread: the machine's two cores are shared by everyone, and
    OpenMP threads that spin-wait on a busy machine make a window many times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
