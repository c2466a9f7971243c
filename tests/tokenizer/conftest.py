"""Shared fixtures of the lyric tokenizer tests: the reference outputs and one loaded engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from services.tokenizer.engine import TokenizerEngine

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "lyrics"


def reference_lines(name: str) -> list[dict[str, Any]]:
    """One fixture file's lines: `line`, `phonemes` (reference string, trailing `|`), `tokens` (+1 ids)."""
    return json.loads((FIXTURE / name).read_text(encoding="utf-8"))


ENGLISH = reference_lines("english_lines.json")
MANDARIN = reference_lines("mandarin_lines.json")
SONG = reference_lines("song.json")[0]


@pytest.fixture(scope="session")
def engine() -> TokenizerEngine:
    """The engine on the installed data package, loaded and warmed up once for the session."""
    return TokenizerEngine.load()
