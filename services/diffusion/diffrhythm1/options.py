"""DiffRhythm v1's own generation options: editing spans of a reference song, and batch candidates.

`parse_options` reads the `diffrhythm1` arm of the generation request (any object with the same
attribute names as `DiffRhythm1Options` in diffrhythm1.proto: `edit_spans` of objects with
`start_seconds` and `end_seconds`, and `candidates`). The message's `keep_raw_level` is the
gateway's (how it writes the song), not the generation stage's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OPEN_END = -1.0
MAX_CANDIDATES = 8


@dataclass(frozen=True)
class EditSpan:
    """A stretch of the reference song to regenerate, in seconds; -1 means the song's start or end."""

    start_seconds: float = OPEN_END
    end_seconds: float = OPEN_END


@dataclass(frozen=True)
class DiffRhythm1Options:
    """edit_spans: regenerate these spans of the request's reference song and keep every other frame
    of it (empty: a new song). candidates: songs sampled together in one batch (0 means 1); candidate
    i is the song the same request makes alone with seed + i."""

    edit_spans: tuple[EditSpan, ...] = ()
    candidates: int = 1


def parse_options(message: Any) -> DiffRhythm1Options:
    """The options carried by a `DiffRhythm1Options` message (or an object with its attribute names)."""
    spans = tuple(EditSpan(float(span.start_seconds), float(span.end_seconds)) for span in message.edit_spans)
    return DiffRhythm1Options(spans, int(message.candidates) or 1)
