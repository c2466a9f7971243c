"""DiffRhythm v1's LRC rules: which lines are sung, when, and on which frames.

Exactly the reference's reading (`parse_lyrics` and `get_lrc_token`):
- The whole text is stripped and split on `\\n` only. A line's timestamp is its characters 1..8
  (`mm:ss.xx` inside `[mm:ss.xx]`), read as `int(mm) * 60 + float(ss.xx)`, and its lyric is
  everything from character 10 on, stripped (so a Windows `\\r` goes). A line where that fails is
  skipped: metadata tags (`[ti:...]`), one-decimal stamps (`[00:05.5]`), empty lines. A
  three-decimal stamp `[00:05.500]x` reads as 5.50 s with the lyric `]x`.
- Lines stay in file order (no sorting). Lines at or after the requested length are dropped; in
  95 s mode the last remaining line is dropped too.
- Each line's tokens (periods turned into commas, one period appended) start at the frame of its
  time, or right after the previous line when that one is still running (a line never overwrites
  the one before it), and are cut at the song's end.
We read a UTF-8 byte order mark as nothing (the reference would skip the first line over it).
`read_song` also refuses what the reference would sing as silence or fail on (see its docstring);
it loads nothing, so the gateway can run it before it accepts a song.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.runtime.errors import FieldViolation, InvalidArgumentError
from services.tokenizer.diffrhythm1.length import SongLength, frame_of, song_length
from services.tokenizer.limits import LYRICS_FIELD

BYTE_ORDER_MARK = "\ufeff"
COMMA_ID = 1
PERIOD_ID = 2


@dataclass(frozen=True)
class TimedLine:
    """One timestamped line: its 1-based line number in the input, its time and its lyric text."""

    number: int
    seconds: float
    text: str


@dataclass(frozen=True)
class ParsedLrc:
    """The timed lines in file order and the numbers of the non-empty lines that carry no timestamp."""

    lines: list[TimedLine]
    untimed: list[int]


@dataclass(frozen=True)
class Placement:
    """Where a line's tokens went: frames [start, start + sung) hold its first `sung` of `length` tokens."""

    start: int
    sung: int
    length: int


def _timestamp(line: str) -> float | None:
    """The seconds of a line's fixed-width stamp, or None where the reference's reading fails."""
    minutes, separator, seconds = line[1:9].partition(":")
    if not separator or ":" in seconds:
        return None
    try:
        return int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


def parse_lrc(lyrics: str) -> ParsedLrc:
    """The timed lines of an LRC text, numbered as lines of the text as given."""
    if lyrics.startswith(BYTE_ORDER_MARK):
        lyrics = lyrics[len(BYTE_ORDER_MARK) :]
    stripped = lyrics.strip()
    first_number = lyrics[: len(lyrics) - len(lyrics.lstrip())].count("\n") + 1
    lines: list[TimedLine] = []
    untimed: list[int] = []
    for number, line in enumerate(stripped.split("\n") if stripped else [], start=first_number):
        seconds = _timestamp(line)
        if seconds is None:
            if line.strip():
                untimed.append(number)
            continue
        lines.append(TimedLine(number, seconds, line[10:].strip()))
    return ParsedLrc(lines, untimed)


def sung_lines(lines: list[TimedLine], length: SongLength) -> tuple[list[TimedLine], list[TimedLine]]:
    """The lines the song sings, and those it drops: lines at or after its end, and in 95 s mode the
    last line that would otherwise be sung."""
    kept = [line for line in lines if line.seconds < length.seconds]
    dropped = [line for line in lines if not line.seconds < length.seconds]
    if length.base_model and kept:
        dropped.append(kept.pop())
    return kept, dropped


def line_tokens(phoneme_ids: list[int]) -> list[int]:
    """A line's tokens as placed: every period becomes a comma and one period ends the line."""
    return [COMMA_ID if token == PERIOD_ID else token for token in phoneme_ids] + [PERIOD_ID]


def place_lines(
    lines: list[TimedLine], tokens: list[list[int]], frames: int
) -> tuple[list[int], list[Placement]]:
    """The frame-aligned token array (0 = no token) of `frames` frames and where each line went."""
    array = [0] * frames
    placements: list[Placement] = []
    previous_end = 0
    for line, line_ids in zip(lines, tokens, strict=True):
        start = max(frame_of(line.seconds), previous_end)
        sung = min(len(line_ids), frames - start)
        array[start : start + sung] = line_ids[:sung]
        placements.append(Placement(start, sung, len(line_ids)))
        previous_end = start + sung
    return array, placements


@dataclass(frozen=True)
class SongLines:
    """An LRC text read for one song length: the length mode, the parsed text, and the lines the
    song sings and drops."""

    length: SongLength
    parsed: ParsedLrc
    kept: list[TimedLine]
    dropped: list[TimedLine]


def read_song(lyrics: str, seconds: float, limits: Any) -> SongLines:
    """Which lines of `lyrics` a song of `seconds` sings, checked without reading them.

    `limits` has `max_chars`, `max_lines` and `max_line_chars` (the tokenizer's settings or the
    gateway's LyricsLimits). INVALID_ARGUMENT on `seconds` outside 95 and 96..285; on `lyrics` for
    text past the limits, for text with lines but none timed (the reference would make silence of
    it), and naming each sung line that has no words or is too long.
    """
    length = song_length(seconds)
    if len(lyrics) > limits.max_chars:
        raise InvalidArgumentError(
            LYRICS_FIELD, f"{len(lyrics)} characters, more than the {limits.max_chars} allowed"
        )
    non_empty = sum(1 for line in lyrics.split("\n") if line.strip())
    if non_empty > limits.max_lines:
        raise InvalidArgumentError(
            LYRICS_FIELD, f"{non_empty} non-empty lines, more than the {limits.max_lines} allowed"
        )
    parsed = parse_lrc(lyrics)
    if not parsed.lines and parsed.untimed:
        raise InvalidArgumentError(
            LYRICS_FIELD,
            f"no line starts with an [mm:ss.xx] timestamp (line {parsed.untimed[0]} is the first "
            "line without one); DiffRhythm v1 sings LRC lyrics; send empty lyrics for an instrumental",
        )
    kept, dropped = sung_lines(parsed.lines, length)
    violations = []
    for line in kept:
        if not line.text:
            problem = "a timestamp without words to sing"
        elif len(line.text) > limits.max_line_chars:
            problem = f"{len(line.text)} characters, more than the {limits.max_line_chars} allowed"
        else:
            continue
        violations.append(FieldViolation(LYRICS_FIELD, f"line {line.number}: {problem}"))
    if violations:
        raise InvalidArgumentError(violations=violations)
    return SongLines(length, parsed, kept, dropped)
