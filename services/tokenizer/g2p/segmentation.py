"""Splitting a sung line into Mandarin and English runs, as the reference front end does.

Each character is Mandarin (U+4E00–U+9FA5), English (ASCII letters) or neither. Characters that
are neither join the run they sit in (leading ones join the first run), so a line alternates zh and
en runs. A line with no Mandarin character and no ASCII letter cannot be read: the reference raises
on it; we say why, naming the line.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

Language = Literal["zh", "en"]

_MANDARIN_RE = re.compile("[\u4e00-\u9fa5]")
_ENGLISH_RE = re.compile("[A-Za-z]")


@dataclass(frozen=True)
class Segment:
    """A run of a line read in one language."""

    text: str
    language: Language


def char_language(char: str) -> Language | None:
    """The language a single character selects, or None when it selects none."""
    if "\u4e00" <= char <= "\u9fa5":
        return "zh"
    if "A" <= char <= "Z" or "a" <= char <= "z":
        return "en"
    return None


def split_segments(text: str) -> list[Segment]:
    """The zh/en runs of `text` in order; empty when no character selects a language."""
    has_mandarin = _MANDARIN_RE.search(text) is not None
    has_english = _ENGLISH_RE.search(text) is not None
    if not (has_mandarin and has_english):
        if has_mandarin:
            return [Segment(text, "zh")]
        return [Segment(text, "en")] if has_english else []
    segments: list[Segment] = []
    current: list[str] = []
    language: Language | None = None
    for char in text:
        selected = char_language(char)
        if selected is not None and language is not None and selected != language:
            segments.append(Segment("".join(current), language))
            current = []
        if selected is not None:
            language = selected
        current.append(char)
    if language is not None:
        segments.append(Segment("".join(current), language))
    return segments


def unreadable_reason(text: str) -> str:
    """Why a line without Mandarin characters or ASCII letters cannot be sung, for the error message."""
    scripts = sorted(
        {
            unicodedata.name(char, "UNKNOWN").split(" ")[0]
            for char in text
            if unicodedata.category(char)[0] == "L"
        }
    )
    if not scripts:
        return "only digits, punctuation or symbols, nothing to sing (write numbers out in words)"
    return (
        f"no Mandarin characters or English letters to sing (found {', '.join(scripts)} letters); "
        "the lyric front end reads Mandarin and English only"
    )
