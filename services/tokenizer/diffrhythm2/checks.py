"""DiffRhythm 2 lyrics checked without the G2P: sizes, and lines with nothing the front end can read.

Pure Python and cheap, so the gateway runs it before it accepts a song: the same rules as the front
end's own line reader, so the gateway and the stage never disagree on what is readable.
"""

from __future__ import annotations

from services.runtime.errors import FieldViolation, InvalidArgumentError
from services.tokenizer.diffrhythm2.structure import LYRICS_FIELD, LineKind, read_lyrics
from services.tokenizer.g2p.segmentation import split_segments, unreadable_reason
from services.tokenizer.limits import LyricsLimits


def check_lyrics(lyrics: str, seconds: float, limits: LyricsLimits) -> None:
    """InvalidArgumentError naming every line that cannot be sung (and any size limit passed).
    DiffRhythm 2 lyrics are not aligned to time, so `seconds` is not read."""
    read = read_lyrics(lyrics, limits)
    violations = [
        FieldViolation(LYRICS_FIELD, f"line {line.number}: {unreadable_reason(line.text)}")
        for line in read.lines
        if line.kind is LineKind.LYRIC and not split_segments(line.text)
    ]
    if violations:
        raise InvalidArgumentError(violations=violations)
