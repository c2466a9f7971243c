"""The lyric families the tokenizer stage can read, each with its front end over the shared reader."""

from __future__ import annotations

from pathlib import Path

from services.runtime.families import Family, FamilyRegistry


def _always(_: Path) -> bool:
    return True


def _diffrhythm2(reader, settings):
    from services.tokenizer.diffrhythm2.frontend import DiffRhythm2Lyrics

    return DiffRhythm2Lyrics(reader, settings)


def _diffrhythm1(reader, settings):
    from services.tokenizer.diffrhythm1.frontend import DiffRhythm1Lyrics

    return DiffRhythm1Lyrics(reader, settings)


# Front ends are built with `load(reader, settings)`; they need no model folder of their own.
LYRIC_FAMILIES: FamilyRegistry = FamilyRegistry("tokenizer")
LYRIC_FAMILIES.register(
    Family(name="diffrhythm2", detect=_always, load=_diffrhythm2, describe="the shared G2P data")
)
LYRIC_FAMILIES.register(
    Family(name="diffrhythm1", detect=_always, load=_diffrhythm1, describe="the shared G2P data")
)
