"""Requests are checked before any stage runs; every problem is named at once."""

from __future__ import annotations

import pytest

from gateway.validation import RequestLimits, song_spec, validate_request
from services.runtime.errors import FieldViolation, InvalidArgumentError
from songsmith.v1 import song_pb2


def _violations(request: song_pb2.SongRequest) -> list[FieldViolation]:
    with pytest.raises(InvalidArgumentError) as caught:
        validate_request(request, RequestLimits())
    return caught.value.violations


def test_a_good_request_passes_and_gets_defaults() -> None:
    request = song_pb2.SongRequest(lyrics="[verse]\nhello there", style_prompt=" folk ")
    validate_request(request, RequestLimits())
    spec = song_spec(request, "job-1", 5)
    assert (spec.steps, spec.cfg_strength, spec.max_frames, spec.style_prompt) == (16, 2.0, 1050, "folk")
    assert spec.target_lufs == -14.0 and spec.audio_format == song_pb2.AUDIO_FORMAT_MP3
    explicit = song_pb2.SongRequest(lyrics="", style_prompt="x", cfg_strength=0.0, max_seconds=3, steps=4)
    spec = song_spec(explicit, "job-2", 1)
    assert (spec.cfg_strength, spec.max_frames, spec.steps) == (0.0, 15, 4)


def test_lyrics_problems_name_the_line() -> None:
    request = song_pb2.SongRequest(lyrics="[verse]\nfine words\n\n1234 !!\nПривет мир", style_prompt="pop")
    found = _violations(request)
    assert [v.field for v in found] == ["lyrics", "lyrics"]
    assert found[0].description.startswith("line 4:") and "digits" in found[0].description
    assert found[1].description.startswith("line 5:") and "CYRILLIC" in found[1].description


def test_oversized_lyrics_are_refused() -> None:
    found = _violations(song_pb2.SongRequest(lyrics="la " * 10_000, style_prompt="pop"))
    assert found[0].field == "lyrics" and "characters" in found[0].description


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"job_id": "has space"}, "job_id"),
        ({"style_prompt": "   "}, "style_prompt"),
        ({"style_prompt": "p" * 1001}, "style_prompt"),
        ({"style_audio": b""}, "style_audio"),
        ({"style_audio": b"x" * ((3 << 20) + 1)}, "style_audio"),
        ({"steps": 1}, "steps"),
        ({"steps": 201}, "steps"),
        ({"cfg_strength": 20.5}, "cfg_strength"),
        ({"cfg_strength": float("nan")}, "cfg_strength"),
        ({"max_seconds": -1}, "max_seconds"),
        ({"max_seconds": 601}, "max_seconds"),
        ({"format": 9}, "format"),
        ({"target_lufs": 3}, "target_lufs"),
    ],
)
def test_each_bad_field_is_named(changes: dict, field: str) -> None:
    request = song_pb2.SongRequest(lyrics="hello", style_prompt="pop")
    for name, value in changes.items():
        setattr(request, name, value)
    assert [v.field for v in _violations(request)] == [field]


def test_missing_style_and_several_problems_together() -> None:
    found = _violations(song_pb2.SongRequest(lyrics="hello", steps=500))
    assert [v.field for v in found] == ["style", "steps"]
