"""Shared fixtures for the chart tests: the Mug-Diffusion reference fixture, a loaded engine and the
reference case run once through our pipeline."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from services.chart.engine import Chart, ChartRequest, ChartSettings, SongAudio
from services.chart.families import CHART_FAMILIES
from services.chart.mug.engine import MugChartEngine

FIXTURE_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "mug-tiny"


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    """The tiny Mug-Diffusion model in the published layout, with the reference's outputs."""
    return FIXTURE_DIR


@pytest.fixture(scope="session")
def case() -> dict:
    """The reference run the fixture records (see its case.json)."""
    return json.loads((FIXTURE_DIR / "case.json").read_text())


@pytest.fixture(scope="session")
def song_bytes() -> bytes:
    """The fixture song: 4.5 s, 48 kHz stereo 16-bit WAV."""
    return (FIXTURE_DIR / "song.wav").read_bytes()


@pytest.fixture(scope="session")
def engine() -> MugChartEngine:
    """The fixture model loaded through the chart stage's family registry."""
    return CHART_FAMILIES.load(FIXTURE_DIR, ChartSettings())


def reference_request(engine: MugChartEngine, case: dict, song: bytes, **changes) -> ChartRequest:
    """The fixture's request (its features as CLI strings, seed 1234, 12 steps, guidance 5), with
    `changes` applied."""
    fields = {
        "audio": SongAudio(encoded=song),
        "features": engine.parse_features([f"{name}={text}" for name, text in case["features"].items()]),
        "seed": case["seed"],
        "steps": case["steps"],
        "guidance": case["cfg"],
    }
    fields.update(changes)
    return ChartRequest(**fields)


@dataclass(frozen=True)
class ReferenceRun:
    """Our pipeline's outputs for the fixture's request."""

    events: list
    chart: Chart


@pytest.fixture(scope="session")
def reference_run(engine: MugChartEngine, case: dict, song_bytes: bytes) -> ReferenceRun:
    """The fixture's request run once through the engine (12 steps, one chart)."""
    events = list(engine.generate(reference_request(engine, case, song_bytes)))
    return ReferenceRun(events, events[-1])


def latents_tolerance(reference: np.ndarray) -> float:
    """The fixture's bar for latents: max(1e-3, 1e-5 x max |reference|)."""
    return max(1e-3, 1e-5 * float(np.abs(reference).max()))


@pytest.fixture(autouse=True, scope="session")
def single_thread_torch():
    """One intra-op thread: the machine's cores are shared, and spinning OpenMP threads on a busy
    machine make small models many times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
