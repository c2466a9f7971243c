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
"""

from __future__ import annotations

from dataclasses import dataclass

from services.tokenizer.diffrhythm1.length import SongLength, frame_of

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
