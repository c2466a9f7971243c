"""Size bounds on one song's lyrics, shared by every lyric family (and checked by the gateway)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LyricsLimits:
    """Size bounds on one song's lyrics; past any of them the request is INVALID_ARGUMENT."""

    max_chars: int = 20_000
    max_lines: int = 500
    max_line_chars: int = 500
