"""DiffRhythm v1's lyric front end: fixture parity in every case, the LRC rules, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from services.runtime.errors import InvalidArgumentError
from services.tokenizer.diffrhythm1.length import song_length
from services.tokenizer.diffrhythm1.lrc import (
    TimedLine,
    line_tokens,
    parse_lrc,
    place_lines,
    read_song,
    sung_lines,
)
from services.tokenizer.diffrhythm2.structure import LyricsLimits
from services.tokenizer.engine import TokenizerEngine

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "diffrhythm1-tiny"
CASE = json.loads((FIXTURE / "case.json").read_text(encoding="utf-8"))


def v1(engine: TokenizerEngine, lyrics: str, seconds: float = 100):
    """Tokenize `lyrics` as DiffRhythm v1 lyrics of `seconds`."""
    return engine.tokenize(lyrics, family="diffrhythm1", seconds=seconds)


def violations(exc: pytest.ExceptionInfo[InvalidArgumentError]) -> list[tuple[str, str]]:
    """The (field, description) pairs of an INVALID_ARGUMENT error."""
    assert exc.value.code == grpc.StatusCode.INVALID_ARGUMENT
    return [(violation.field, violation.description) for violation in exc.value.violations]


@pytest.mark.parametrize("case", CASE["token_cases"], ids=lambda case: f"{case['lrc']}-{case['seconds']}s")
def test_tokens_match_reference(engine: TokenizerEngine, case: dict) -> None:
    lyrics = (FIXTURE / case["lrc"]).read_text(encoding="utf-8")
    result = v1(engine, lyrics, case["seconds"])
    assert result.tokens == case["expected_tokens"]


@pytest.mark.parametrize("case", CASE["token_cases"], ids=lambda case: f"{case['lrc']}-{case['seconds']}s")
def test_length_mode_matches_reference(case: dict) -> None:
    length = song_length(case["seconds"])
    assert (length.frames, length.max_frames) == (case["frames"], case["max_frames"])
    assert (length.start_time, length.duration) == (case["start_time"], case["song_duration"])


@pytest.mark.parametrize(("seconds", "frames"), [(0, 2048), (95, 2048), (96, 2067), (100, 2153), (285, 6136)])
def test_frames_per_length(seconds: int, frames: int) -> None:
    assert song_length(seconds).frames == frames


def test_generation_case_tokens_are_the_100_second_song(engine: TokenizerEngine) -> None:
    result = v1(engine, (FIXTURE / CASE["lyrics"]).read_text(encoding="utf-8"), CASE["seconds"])
    assert result.tokens == CASE["expected_tokens"]
    assert [line.number for line in result.lines] == [2, 3, 4, 5, 6, 7]
    assert result.lines[0].timestamp == 1.2


def test_spaces_in_mandarin_are_no_word_separator(engine: TokenizerEngine) -> None:
    (v1_reading,) = engine.reader.read_lines(["我爱你 你爱我"], word_separators=False)
    (v2_reading,) = engine.reader.read_lines(["我爱你 你爱我"])
    separator = engine.reader.phoneme_ids["_"]
    assert len(v1_reading.tokens) == 8 and separator not in v1_reading.tokens
    assert len(v2_reading.tokens) == 9 and v2_reading.tokens[4] == separator
    assert [token for token in v2_reading.tokens if token != separator] == v1_reading.tokens


def test_fixed_width_timestamps() -> None:
    parsed = parse_lrc("[00:05.500]x\n[00:05.5]y\n[1:05.50]z\n[ti:Song]\n[01:02.25]  words \r\n[00:07.00]")
    assert [(line.number, line.seconds, line.text) for line in parsed.lines] == [
        (1, 5.5, "]x"),
        (5, 62.25, "words"),
        (6, 7.0, ""),
    ]
    assert parsed.untimed == [2, 3, 4]


def test_line_numbers_count_leading_blank_lines_and_ignore_a_byte_order_mark() -> None:
    parsed = parse_lrc("\ufeff\n\n  [00:01.00]a\n[00:02.00]b\n")
    assert [(line.number, line.text) for line in parsed.lines] == [(3, "a"), (4, "b")]


def test_lines_keep_file_order_and_never_overlap() -> None:
    lines = [TimedLine(1, 2.0, "late"), TimedLine(2, 0.0, "early"), TimedLine(3, 2.05, "next")]
    tokens, placements = place_lines(lines, [[5, 6, 2], [7, 8, 2], [9, 2]], frames=60)
    # 2 s is frame 43: "early" (time 0) starts after "late" ends, and "next" after "early".
    assert [placement.start for placement in placements] == [43, 46, 49]
    assert tokens[43:51] == [5, 6, 2, 7, 8, 2, 9, 2]
    assert sum(1 for token in tokens if token) == 8


def test_tokens_past_the_end_are_cut() -> None:
    tokens, placements = place_lines([TimedLine(1, 2.0, "x")], [[3, 4, 5, 6, 2]], frames=45)
    assert tokens[43:] == [3, 4] and placements[0].sung == 2 and placements[0].length == 5


def test_periods_become_commas_and_each_line_ends_with_one() -> None:
    assert line_tokens([10, 2, 11, 1, 2]) == [10, 1, 11, 1, 1, 2]


def test_base_mode_drops_the_last_line_before_the_end() -> None:
    lines = [TimedLine(1, 10.0, "a"), TimedLine(2, 90.0, "b"), TimedLine(3, 96.0, "c")]
    kept, dropped = sung_lines(lines, song_length(95))
    assert [line.text for line in kept] == ["a"] and [line.text for line in dropped] == ["c", "b"]
    kept, dropped = sung_lines(lines, song_length(100))
    assert [line.text for line in kept] == ["a", "b", "c"] and dropped == []


def test_empty_lyrics_are_an_instrumental(engine: TokenizerEngine) -> None:
    for lyrics in ("", "  \n\r\n "):
        result = v1(engine, lyrics, 96)
        assert result.tokens == [0] * 2067 and result.lines == []
        assert result.warnings == ["empty lyrics: an instrumental"]


def test_only_tags_is_invalid(engine: TokenizerEngine) -> None:
    with pytest.raises(InvalidArgumentError) as exc:
        v1(engine, "[ti:Song]\n[ar:Someone]\n[verse]")
    [(field, description)] = violations(exc)
    assert field == "lyrics" and "line 1 is the first line without one" in description


def test_malformed_timestamp_line_is_skipped_with_a_warning(engine: TokenizerEngine) -> None:
    result = v1(engine, "[00:01.00]hello\n[00:03.5]skipped line\n[00:05.00]world")
    assert [line.number for line in result.lines] == [1, 3]
    assert "line 2: not an [mm:ss.xx] timed line, not sung" in result.warnings


def test_only_malformed_timestamps_are_invalid(engine: TokenizerEngine) -> None:
    with pytest.raises(InvalidArgumentError) as exc:
        v1(engine, "[00:03.5]one decimal\n[0:04.00]one minute digit")
    assert violations(exc)[0][0] == "lyrics"


@pytest.mark.parametrize("seconds", [94, 95.5, 96.5, 286, 300, -1])
def test_out_of_range_seconds_are_invalid(engine: TokenizerEngine, seconds: float) -> None:
    with pytest.raises(InvalidArgumentError) as exc:
        v1(engine, "[00:01.00]hello", seconds)
    [(field, description)] = violations(exc)
    assert field == "seconds" and "95 or a whole number in 96..285" in description


def test_unsingable_line_names_its_number(engine: TokenizerEngine) -> None:
    with pytest.raises(InvalidArgumentError) as exc:
        v1(engine, "[00:01.00]hello\n\n[00:10.00]2025!")
    [(field, description)] = violations(exc)
    assert field == "lyrics" and description.startswith("line 3: only digits")


def test_timestamp_without_words_names_its_line(engine: TokenizerEngine) -> None:
    with pytest.raises(InvalidArgumentError) as exc:
        v1(engine, "[00:01.00]hello\n[00:04.00]\n[00:06.00]world")
    assert violations(exc) == [("lyrics", "line 2: a timestamp without words to sing")]


def test_unsingable_line_after_the_end_is_not_read(engine: TokenizerEngine) -> None:
    result = v1(engine, "[00:01.00]hello\n[02:00.00]2025!", 100)
    assert [line.number for line in result.lines] == [1]
    assert result.warnings == ["line 2: starts at 120 s, after the song's 100 s end"]


def test_size_limits(engine: TokenizerEngine) -> None:
    with pytest.raises(InvalidArgumentError) as exc:
        v1(engine, "[00:01.00]" + "la " * 200)
    assert violations(exc) == [("lyrics", "line 1: 599 characters, more than the 500 allowed")]


def test_read_song_checks_lyrics_without_loading_the_reader() -> None:
    song = read_song("[00:01.00]a\n[02:00.00]b", 100, LyricsLimits())
    assert [line.number for line in song.kept] == [1] and [line.number for line in song.dropped] == [2]
    with pytest.raises(InvalidArgumentError) as exc:
        read_song("[ti:Song]", 100, LyricsLimits())
    assert violations(exc)[0][0] == "lyrics"
    probe = (
        "import sys, services.tokenizer.diffrhythm1.lrc; "
        "print(sorted(m for m in ('jieba', 'onnxruntime', 'phonemizer', 'torch') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
