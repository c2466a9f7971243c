"""The lyric families the tokenizer stage can read, each with its front end over the shared reader."""

from __future__ import annotations

from pathlib import Path

from services.runtime.families import Family, FamilyRegistry


def _always(_: Path) -> bool:
    return True


def _diffrhythm2(reader, settings):
    from services.tokenizer.diffrhythm2.frontend import DiffRhythm2Lyrics

    return DiffRhythm2Lyrics(reader, settings)


def _check_diffrhythm2(lyrics: str, seconds: float, limits) -> None:
    from services.tokenizer.diffrhythm2.checks import check_lyrics

    check_lyrics(lyrics, seconds, limits)


def _diffrhythm1(reader, settings):
    from services.tokenizer.diffrhythm1.frontend import DiffRhythm1Lyrics

    return DiffRhythm1Lyrics(reader, settings)


def _check_diffrhythm1(lyrics: str, seconds: float, limits) -> None:
    from services.tokenizer.diffrhythm1.lrc import read_song

    read_song(lyrics, seconds, limits)


# Front ends are built with `load(reader, settings)`; they need no model folder of their own.
LYRIC_FAMILIES: FamilyRegistry = FamilyRegistry("tokenizer")
LYRIC_FAMILIES.register(
    Family(
        name="diffrhythm2",
        detect=_always,
        load=_diffrhythm2,
        describe="the shared G2P data",
        check_input=_check_diffrhythm2,
    )
)
LYRIC_FAMILIES.register(
    Family(
        name="diffrhythm1",
        detect=_always,
        load=_diffrhythm1,
        describe="the shared G2P data",
        check_input=_check_diffrhythm1,
    )
)
