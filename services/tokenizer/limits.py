"""Size bounds on one song's lyrics and the field they travel in, shared by every lyric family (and
checked by the gateway, which must not load the G2P to do it)."""

from __future__ import annotations

from dataclasses import dataclass

LYRICS_FIELD = "lyrics"


@dataclass(frozen=True)
class LyricsLimits:
    """Size bounds on one song's lyrics; past any of them the request is INVALID_ARGUMENT."""

    max_chars: int = 20_000
    max_lines: int = 500
    max_line_chars: int = 500
