"""Token-for-token parity with the reference front end's outputs in tests/fixtures/lyrics."""

from __future__ import annotations

from typing import Any

import pytest

from services.tokenizer.diffrhythm2.structure import START_ID, STOP_ID
from services.tokenizer.engine import TokenizerEngine
from tests.tokenizer.conftest import ENGLISH, MANDARIN, SONG


@pytest.mark.parametrize("case", ENGLISH + MANDARIN, ids=lambda case: case["line"])
def test_line_matches_reference(engine: TokenizerEngine, case: dict[str, Any]) -> None:
    result = engine.tokenize(case["line"])
    (line,) = result.lines
    assert line.kind == "lyric"
    # The reference's phoneme string always ends with a separator; ours leaves it off.
    assert line.phonemes + "|" == case["phonemes"]
    assert line.tokens == case["tokens"]
    assert result.tokens == [START_ID, STOP_ID, *case["tokens"], STOP_ID]


def test_all_lines_in_one_batch_match_reference(engine: TokenizerEngine) -> None:
    cases = ENGLISH + MANDARIN
    result = engine.tokenize("\n".join(case["line"] for case in cases))
    assert [line.tokens for line in result.lines] == [case["tokens"] for case in cases]
    assert [line.phonemes + "|" for line in result.lines] == [case["phonemes"] for case in cases]


def test_song_matches_reference(engine: TokenizerEngine) -> None:
    result = engine.tokenize(SONG["lyrics"])
    assert result.tokens == SONG["tokens"]
    assert result.warnings == ["line 9: unknown structure tag [bridge-x] dropped"]
    assert [(line.number, line.kind) for line in result.lines] == [
        (1, "tag"),
        (3, "tag"),
        (4, "lyric"),
        (5, "lyric"),
        (6, "tag"),
        (7, "lyric"),
        (8, "lyric"),
        (10, "tag"),
        (11, "tag"),
    ]


def test_repeated_lines_read_once_give_the_same_tokens(engine: TokenizerEngine) -> None:
    chorus = MANDARIN[2]
    result = engine.tokenize("\n".join([chorus["line"], ENGLISH[0]["line"], chorus["line"]]))
    assert result.lines[0].tokens == result.lines[2].tokens == chorus["tokens"]
    line_tokens = [chorus["tokens"], ENGLISH[0]["tokens"], chorus["tokens"]]
    assert result.tokens == [
        START_ID,
        STOP_ID,
        *(token for tokens in line_tokens for token in (*tokens, STOP_ID)),
    ]
