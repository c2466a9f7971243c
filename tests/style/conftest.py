"""Shared fixtures of the style encoder tests: the parity fixture, its case file, a loaded engine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.style.muq_mulan.engine import StyleEngine

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "muq-mulan-tiny"
CHECKPOINT = FIXTURE / "MuQ-MuLan-tiny"


@pytest.fixture(scope="session")
def case() -> dict[str, Any]:
    """The fixture's case.json: inputs, shapes, tolerances."""
    return json.loads((FIXTURE / "case.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def engine() -> StyleEngine:
    """The fixture checkpoint loaded once for the whole session (prompt cache disabled)."""
    return StyleEngine.load(CHECKPOINT, text_cache_size=0)


def expected(name: str) -> np.ndarray:
    """A reference output from the fixture's expected/ folder."""
    return np.load(FIXTURE / "expected" / f"{name}.npy")


def copy_fixture_layout(destination: Path, weights: tuple[str, ...] = ("model.safetensors",)) -> Path:
    """A writable copy of the fixture's checkpoint folder (only `weights`) and its sub-model folders;
    returns the checkpoint folder."""
    for sub in ("MuQ-tiny-audio", "xlm-roberta-tiny"):
        shutil.copytree(FIXTURE / sub, destination / sub)
    checkpoint = destination / CHECKPOINT.name
    checkpoint.mkdir(parents=True)
    for name in ("config.json", *weights):
        shutil.copyfile(CHECKPOINT / name, checkpoint / name)
    return checkpoint
