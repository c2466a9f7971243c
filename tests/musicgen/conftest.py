"""Shared fixtures of the MusicGen tests: the three parity fixtures (mono, stereo, melody), their cases,
and each stage's engine loaded once per session."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from services.diffusion.engine import GenerationRequest
from services.diffusion.musicgen.engine import MusicgenEngine
from services.diffusion.musicgen.options import MusicgenOptions
from services.style.musicgen.engine import MusicgenStyleEngine
from services.vocoder.musicgen.engine import MusicgenVocoderEngine

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NAMES = ("musicgen-tiny", "musicgen-stereo-tiny", "musicgen-melody-tiny")


@dataclass(frozen=True)
class Fixture:
    """One parity fixture: its folder and case.json."""

    name: str
    folder: Path
    case: dict

    def array(self, file_name: str) -> np.ndarray:
        """An expected array of the fixture."""
        return np.load(self.folder / file_name)

    def text_states(self, prompt: int) -> np.ndarray:
        """The reference T5 states of prompt `prompt`."""
        return self.array(self.case["prompts"][prompt]["expected_text_states"])


def load_fixture(name: str) -> Fixture:
    """Read a fixture's case.json."""
    folder = FIXTURES / name
    return Fixture(name, folder, json.loads((folder / "case.json").read_text(encoding="utf-8")))


def all_cases() -> list[tuple[str, str]]:
    """(fixture, case) for every case of the three fixtures, for parametrisation."""
    return [(name, case["name"]) for name in NAMES for case in load_fixture(name).case["cases"]]


def find_case(fixture: Fixture, case_name: str) -> dict:
    """A case of a fixture by name."""
    return next(case for case in fixture.case["cases"] if case["name"] == case_name)


def case_request(fixture: Fixture, case: dict, **changes) -> GenerationRequest:
    """The generation request of a fixture case (its text states, chroma, seed, cfg, length, sampler)."""
    melody = fixture.array("expected_chroma_ref.npy") if case.get("melody_ref") else None
    options = MusicgenOptions(
        greedy=case["mode"] == "greedy",
        top_k=case.get("top_k", 250),
        temperature=case.get("temperature", 1.0),
    )
    fields = {
        "style": fixture.text_states(case["prompt"]),
        "melody": melody,
        "seed": case.get("seed", 0),
        "cfg_strength": case["cfg"],
        "max_frames": case["max_frames"],
        "options": options,
    }
    return GenerationRequest(**(fields | changes))


def song_codes(blocks) -> np.ndarray:
    """The codes of a whole song from its blocks, [frames, codebooks]."""
    return np.concatenate([block.frames for block in blocks])


@pytest.fixture(scope="session")
def fixtures() -> dict[str, Fixture]:
    """The three fixtures by name."""
    return {name: load_fixture(name) for name in NAMES}


@pytest.fixture(scope="session")
def generation_engines() -> dict[str, MusicgenEngine]:
    """The generation engine of each fixture."""
    return {name: MusicgenEngine.load(FIXTURES / name) for name in NAMES}


@pytest.fixture(scope="session")
def vocoder_engines() -> dict[str, MusicgenVocoderEngine]:
    """The vocoder engine of each fixture."""
    return {name: MusicgenVocoderEngine.load(FIXTURES / name) for name in NAMES}


@pytest.fixture(scope="session")
def style_engines() -> dict[str, MusicgenStyleEngine]:
    """The style engine of each fixture (prompt cache off)."""
    return {name: MusicgenStyleEngine.load(FIXTURES / name, text_cache_size=0) for name in NAMES}
