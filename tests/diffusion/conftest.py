"""Shared fixtures for the diffusion stage's tests: the reference checkpoint and its recorded case."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from services.diffusion.diffrhythm2.demo import write_demo_checkpoint
from services.diffusion.diffrhythm2.engine import DiffusionEngine

FIXTURE_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "diffrhythm2-tiny"
MODEL_FILES = ("model.safetensors", "config.json")


@pytest.fixture(scope="session")
def case() -> dict:
    """The reference generation recorded with the tiny checkpoint (case.json plus its arrays)."""
    raw = json.loads((FIXTURE_DIR / "case.json").read_text())
    raw["style_vector"] = np.load(FIXTURE_DIR / raw["style"])
    raw["latents"] = np.load(FIXTURE_DIR / raw["expected_latents"])
    return raw


@pytest.fixture(scope="session")
def reference_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory holding only the tiny reference DiT's files."""
    target = tmp_path_factory.mktemp("diffrhythm2-tiny")
    for name in MODEL_FILES:
        shutil.copy(FIXTURE_DIR / name, target / name)
    return target


@pytest.fixture(scope="session")
def reference_engine(reference_model_dir: Path) -> DiffusionEngine:
    """The engine over the tiny reference checkpoint, on CPU in float32."""
    return DiffusionEngine.load(reference_model_dir)


@pytest.fixture(scope="session")
def reference_blocks(reference_engine: DiffusionEngine, case: dict) -> list:
    """The recorded case sampled by our engine in process, block by block."""
    return list(
        reference_engine.sample(
            np.array(case["tokens"]),
            case["style_vector"],
            seed=case["seed"],
            steps=case["steps"],
            cfg_strength=case["cfg_strength"],
            max_frames=case["max_frames"],
        )
    )


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory written by the demo writer."""
    return write_demo_checkpoint(tmp_path_factory.mktemp("demo-dit"))


@pytest.fixture(scope="session")
def demo_engine(demo_model_dir: Path) -> DiffusionEngine:
    """The engine over the demo checkpoint."""
    return DiffusionEngine.load(demo_model_dir)
