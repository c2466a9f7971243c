"""Reading a lyrics text into lines: structure tags, LRC timestamps, limits, and line endings.

Follows the newer upstream DiffRhythm 2 rules: every line is stripped and empty lines skipped; a line
that is exactly `[tag]` is a structure tag looked up lower-cased among the 13 known tags (an unknown
one is dropped with a warning); anything else is a sung line. On top of that, a leading LRC
timestamp such as `[01:02.50]` is removed from a line and kept, a UTF-8 byte order mark is ignored,
Windows and old Mac line endings count as line breaks, and the text is bounded in size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from services.runtime.errors import InvalidArgumentError
from services.tokenizer.limits import LYRICS_FIELD, LyricsLimits

STRUCTURE_TAGS: dict[str, int] = {
    "start": 500,
    "end": 501,
    "intro": 502,
    "verse": 503,
    "chorus": 504,
    "outro": 505,
    "inst": 506,
    "solo": 507,
    "bridge": 508,
    "hook": 509,
    "break": 510,
    "stop": 511,
    "space": 512,
}
START_ID = STRUCTURE_TAGS["start"]
STOP_ID = STRUCTURE_TAGS["stop"]
INSTRUMENTAL_TAGS = ("start", "inst", "end")

BYTE_ORDER_MARK = "\ufeff"
_TAG_LINE = re.compile(r"^\[(.*?)\]$")
_LRC_TIMESTAMP = re.compile(r"^\[(\d{1,3}):(\d{1,2}(?:\.\d{1,3})?)\]")


class LineKind(Enum):
    """What a kept lyrics line is."""

    TAG = "tag"
    LYRIC = "lyric"


@dataclass(frozen=True)
class SourceLine:
    """One kept input line: its 1-based number, stripped text, kind, tag id and LRC timestamp."""

    number: int
    text: str
    kind: LineKind
    tag_id: int | None = None
    timestamp_seconds: float | None = None


@dataclass(frozen=True)
class ReadLyrics:
    """The kept lines of a lyrics text and the notes about what was dropped."""

    lines: list[SourceLine]
    warnings: list[str]
    instrumental: bool


def invalid_line(number: int, reason: str) -> InvalidArgumentError:
    """The INVALID_ARGUMENT error for one lyrics line, naming its 1-based number."""
    return InvalidArgumentError(field=LYRICS_FIELD, description=f"line {number}: {reason}")


def split_timestamp(text: str) -> tuple[str, float | None]:
    """Remove leading LRC timestamps from a stripped line; return the rest and the first one in seconds.

    `[mm:ss]` and `[mm:ss.f]` with one to three fraction digits are recognised; several stacked
    timestamps (LRC's way of repeating a line) are all removed and the first is kept.
    """
    first: float | None = None
    match = _LRC_TIMESTAMP.match(text)
    while match:
        if first is None:
            first = int(match.group(1)) * 60 + float(match.group(2))
        text = text[match.end() :].strip()
        match = _LRC_TIMESTAMP.match(text)
    return text, first


def split_lines(lyrics: str) -> list[str]:
    """The raw lines of a lyrics text: byte order mark removed, CRLF and CR read as line breaks."""
    if lyrics.startswith(BYTE_ORDER_MARK):
        lyrics = lyrics[len(BYTE_ORDER_MARK) :]
    return lyrics.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def read_lyrics(lyrics: str, limits: LyricsLimits) -> ReadLyrics:
    """Classify every non-empty line as a tag or a sung line, enforcing `limits`.

    Empty lyrics (no non-empty line at all) read as an instrumental: `[start] [inst] [end]`.
    """
    if len(lyrics) > limits.max_chars:
        raise InvalidArgumentError(
            field=LYRICS_FIELD,
            description=f"{len(lyrics)} characters, more than the {limits.max_chars} allowed",
        )
    kept: list[SourceLine] = []
    warnings: list[str] = []
    non_empty = 0
    for number, raw in enumerate(split_lines(lyrics), start=1):
        text, timestamp = split_timestamp(raw.strip())
        if not text:
            continue
        non_empty += 1
        if non_empty > limits.max_lines:
            raise InvalidArgumentError(
                field=LYRICS_FIELD,
                description=f"more than {limits.max_lines} non-empty lines (line {number} is one too many)",
            )
        if len(text) > limits.max_line_chars:
            raise invalid_line(
                number, f"{len(text)} characters, more than the {limits.max_line_chars} allowed"
            )
        tag = _TAG_LINE.match(text)
        if tag is None:
            kept.append(SourceLine(number, text, LineKind.LYRIC, timestamp_seconds=timestamp))
        elif (tag_id := STRUCTURE_TAGS.get(tag.group(1).lower())) is not None:
            kept.append(SourceLine(number, text, LineKind.TAG, tag_id, timestamp))
        else:
            warnings.append(f"line {number}: unknown structure tag {text} dropped")
    if non_empty == 0:
        return ReadLyrics([], ["empty lyrics: read as an instrumental ([start] [inst] [end])"], True)
    return ReadLyrics(kept, warnings, False)


def instrumental_tokens() -> list[int]:
    """The token sequence that stands for empty lyrics: `[start] [inst] [end]`, each tag then 511."""
    return [token for name in INSTRUMENTAL_TAGS for token in (STRUCTURE_TAGS[name], STOP_ID)]
