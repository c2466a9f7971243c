"""Input the reference cannot read or that is too large: INVALID_ARGUMENT naming the line and why."""

from __future__ import annotations

import pytest

from services.runtime.errors import InvalidArgumentError
from services.tokenizer.diffrhythm2.structure import read_lyrics
from services.tokenizer.engine import TokenizerEngine
from services.tokenizer.limits import LyricsLimits


def violations(engine: TokenizerEngine, lyrics: str) -> list[tuple[str, str]]:
    with pytest.raises(InvalidArgumentError) as caught:
        engine.tokenize(lyrics)
    return [(violation.field, violation.description) for violation in caught.value.violations]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("2026", "only digits, punctuation or symbols"),
        ("... !!! ...", "only digits, punctuation or symbols"),
        ("$5.50", "only digits, punctuation or symbols"),
        ("こんにちは", "found HIRAGANA letters"),
        ("Привет, мир", "found CYRILLIC letters"),
        ("사랑해", "found HANGUL letters"),
    ],
)
def test_a_line_with_nothing_to_read(engine: TokenizerEngine, line: str, reason: str) -> None:
    lyrics = f"[verse]\nHello world\n\n你好\n\n\n{line}\n[end]"
    ((field, description),) = violations(engine, lyrics)
    assert field == "lyrics"
    assert description.startswith("line 7: ")
    assert reason in description


def test_every_bad_line_is_named(engine: TokenizerEngine) -> None:
    found = violations(engine, "123\nhello\nこんにちは\n123")
    assert [description.split(":")[0] for _, description in found] == ["line 1", "line 3"]


def test_many_bad_lines_are_summed_up(engine: TokenizerEngine) -> None:
    found = violations(engine, "\n".join(f"{number} {number}" for number in range(1, 26)))
    assert [description.split(":")[0] for _, description in found[:10]] == [f"line {n}" for n in range(1, 11)]
    assert found[10] == ("lyrics", "and 15 more lines that cannot be read")
    assert len(found) == 11


def test_a_number_too_large_to_say(engine: TokenizerEngine) -> None:
    ((_, description),) = violations(engine, "fine\nI count 1" + "0" * 40 + " stars")
    assert description == "line 2: a number too large to read out in English"


def test_a_mandarin_line_too_long_once_numbers_are_written_out(engine: TokenizerEngine) -> None:
    line = "我数" + "1234567890123456，" * 25
    assert len(line) <= 500
    ((_, description),) = violations(engine, line)
    assert description.startswith("line 1: ") and "once numbers are written out" in description


def test_size_limits_of_the_service(engine: TokenizerEngine) -> None:
    ((field, description),) = violations(engine, "la " * 6667)
    assert field == "lyrics" and "20001 characters, more than the 20000 allowed" in description
    ((_, description),) = violations(engine, "la\n\n" * 501)
    assert "more than 500 non-empty lines" in description and "line 1001" in description
    ((_, description),) = violations(engine, "ok\n" + "la " * 200)
    assert description == "line 2: 599 characters, more than the 500 allowed"


def test_limits_are_configurable() -> None:
    limits = LyricsLimits(max_chars=50, max_lines=2, max_line_chars=10)
    assert len(read_lyrics("[verse]\nshort line\n\n", limits).lines) == 2
    for lyrics in ("x" * 51, "a\nb\nc", "twelve chars"):
        with pytest.raises(InvalidArgumentError):
            read_lyrics(lyrics, limits)
