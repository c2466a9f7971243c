"""Punctuation as both lyric readers normalize it: full-width marks to ASCII, no spaces around marks."""

from __future__ import annotations

import re

_FULL_WIDTH = (
    ("，", ","),
    ("。", "."),
    ("！", "!"),
    ("？", "?"),
    ("；", ";"),
    ("：", ":"),
    ("、", ","),
    ("‘", "'"),
    ("’", "'"),
    ("⋯", "…"),
    ("···", "…"),
    ("・・・", "…"),
    ("...", "…"),
)
_SPACE_AROUND = re.compile(r"\s*([,\.\?!;:\'…])\s*")


def ascii_punctuation(text: str) -> str:
    """Full-width and repeated marks replaced, in the reference's order, by the ASCII ones it reads."""
    for source, target in _FULL_WIDTH:
        text = text.replace(source, target)
    return text


def tighten_punctuation(text: str) -> str:
    """Spaces around punctuation marks removed."""
    return _SPACE_AROUND.sub(r"\1", text)
