"""Lyrics-level rules: structure tags, LRC timestamps, instrumental, BOM, line endings, warnings."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from services.runtime.cancellation import CancellationToken
from services.runtime.errors import CancelledError
from services.tokenizer.diffrhythm2.structure import STOP_ID, STRUCTURE_TAGS, split_timestamp
from services.tokenizer.engine import TokenizerEngine
from tests.tokenizer.conftest import ENGLISH, MANDARIN

HELLO = ENGLISH[0]
SANSHAN = MANDARIN[0]


def test_empty_lyrics_are_an_instrumental(engine: TokenizerEngine) -> None:
    for lyrics in ("", "\n\n", "  \r\n\t\n", "\ufeff", "[00:01.00]\n[00:02.00]"):
        result = engine.tokenize(lyrics)
        assert result.tokens == [500, STOP_ID, 506, STOP_ID, 501, STOP_ID]
        assert result.lines == []
        assert "instrumental" in result.warnings[0]


@pytest.mark.parametrize(("name", "tag_id"), sorted(STRUCTURE_TAGS.items()))
def test_every_structure_tag(engine: TokenizerEngine, name: str, tag_id: int) -> None:
    result = engine.tokenize(f"[{name.upper()}]")
    expected_prefix = [] if name == "start" else [500, STOP_ID]
    assert result.tokens == [*expected_prefix, tag_id, STOP_ID]
    assert [(line.kind, line.tokens, line.phonemes) for line in result.lines] == [("tag", [tag_id], "")]


def test_start_is_added_only_when_absent(engine: TokenizerEngine) -> None:
    with_start = engine.tokenize(f"[verse]\n[start]\n{HELLO['line']}")
    assert with_start.tokens == [503, STOP_ID, 500, STOP_ID, *HELLO["tokens"], STOP_ID]
    without = engine.tokenize(f"[verse]\n{HELLO['line']}\n[end]")
    assert without.tokens == [500, STOP_ID, 503, STOP_ID, *HELLO["tokens"], STOP_ID, 501, STOP_ID]


def test_unknown_tags_are_dropped_with_a_warning(engine: TokenizerEngine) -> None:
    result = engine.tokenize(f"[Verse 1]\n\n{HELLO['line']}\n[ar:Someone]")
    assert result.tokens == [500, STOP_ID, *HELLO["tokens"], STOP_ID]
    assert result.warnings == [
        "line 1: unknown structure tag [Verse 1] dropped",
        "line 4: unknown structure tag [ar:Someone] dropped",
    ]
    assert [line.number for line in result.lines] == [3]


def test_a_line_that_is_not_exactly_a_tag_is_sung(engine: TokenizerEngine) -> None:
    result = engine.tokenize("[verse] hello")
    assert result.lines[0].kind == "lyric"
    assert result.lines[0].tokens == engine.tokenize("verse hello").lines[0].tokens


def test_lrc_timestamps_are_removed_and_reported(engine: TokenizerEngine) -> None:
    lyrics = f"[00:12.34]{HELLO['line']}\n[01:02] {SANSHAN['line']}\n[00:05.00][verse]\n[00:20.00]\nno time"
    result = engine.tokenize(lyrics)
    assert [(line.number, line.text, line.timestamp) for line in result.lines] == [
        (1, HELLO["line"], 12.34),
        (2, SANSHAN["line"], 62.0),
        (3, "[verse]", 5.0),
        (5, "no time", None),
    ]
    assert result.lines[0].tokens == HELLO["tokens"]
    assert result.lines[1].tokens == SANSHAN["tokens"]
    assert result.lines[2].tokens == [503]


def test_stacked_timestamps_keep_the_first() -> None:
    assert split_timestamp("[00:01.5][00:30.25] la la") == ("la la", 1.5)
    assert split_timestamp("[1:02.345]x") == ("x", 62.345)
    assert split_timestamp("[verse]") == ("[verse]", None)
    assert split_timestamp("[00:1x]y") == ("[00:1x]y", None)


def test_byte_order_mark_and_windows_line_endings(engine: TokenizerEngine) -> None:
    plain = engine.tokenize(f"[verse]\n{HELLO['line']}\n{SANSHAN['line']}\n")
    for variant in (
        f"\ufeff[verse]\r\n{HELLO['line']}\r\n{SANSHAN['line']}\r\n",
        f"[verse]\r{HELLO['line']}\r{SANSHAN['line']}\r",
    ):
        result = engine.tokenize(variant)
        assert result.tokens == plain.tokens
        assert [(line.number, line.text) for line in result.lines] == [
            (1, "[verse]"),
            (2, HELLO["line"]),
            (3, SANSHAN["line"]),
        ]


def test_characters_outside_mandarin_and_english_are_reported(engine: TokenizerEngine) -> None:
    result = engine.tokenize("你好こんにちは")
    assert result.lines[0].tokens == engine.tokenize("你好").lines[0].tokens
    assert result.warnings == ["line 1: not sung (outside Mandarin and English): こんにちは"]


def test_a_cancelled_call_stops(engine: TokenizerEngine) -> None:
    token = CancellationToken()
    token.cancel()
    with pytest.raises(CancelledError):
        engine.tokenize(HELLO["line"], token)


def test_concurrent_calls_read_like_sequential_ones(engine: TokenizerEngine) -> None:
    songs = [
        f"It costs ${dollars}.{cents:02d} on the {dollars}th, {cents}% of 1984\n"
        f"我们在{dollars}年的{cents}月相遇"
        for dollars, cents in zip(range(1, 41), range(40, 0, -1), strict=True)
    ]
    sequential = [engine.tokenize(song).tokens for song in songs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(lambda song: engine.tokenize(song).tokens, songs)) == sequential
