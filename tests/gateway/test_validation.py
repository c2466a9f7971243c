"""Requests are checked before any stage runs; every problem is named at once, and inputs a model
cannot use are refused naming the field."""

from __future__ import annotations

import pytest

from gateway.validation import RequestLimits, song_spec, validate_for_model, validate_request
from services.runtime.errors import FieldViolation, InvalidArgumentError
from services.runtime.model_info import LYRICS, MELODY_AUDIO, STYLE_AUDIO, STYLE_TEXT, ModelInfo
from songsmith.v1 import song_pb2

DIFFRHYTHM2 = ModelInfo(
    "diffrhythm2", "diffrhythm2", "r2", frame_rate=5.0, inputs=(LYRICS, STYLE_TEXT, STYLE_AUDIO)
)
TEXT_AND_MELODY = ModelInfo("melodic", "textmusic", "r1", frame_rate=50.0, inputs=(STYLE_TEXT, MELODY_AUDIO))


def _violations(request: song_pb2.SongRequest, info: ModelInfo = DIFFRHYTHM2) -> list[FieldViolation]:
    with pytest.raises(InvalidArgumentError) as caught:
        validate_request(request, RequestLimits())
        validate_for_model(request, info, RequestLimits())
    return caught.value.violations


def _seconds(value: float) -> song_pb2.SongRequest:
    request = song_pb2.SongRequest(lyrics="hello", style_prompt="pop")
    request.max_duration.FromNanoseconds(round(value * 1e9))
    return request


def test_a_good_request_passes_and_leaves_the_model_defaults_open() -> None:
    request = song_pb2.SongRequest(lyrics="[verse]\nhello there", style_prompt=" folk ")
    validate_request(request, RequestLimits())
    validate_for_model(request, DIFFRHYTHM2, RequestLimits())
    spec = song_spec(request, "job-1", 5)
    assert (spec.steps, spec.cfg_strength, spec.max_seconds, spec.style_prompt) == (0, None, 0.0, "folk")
    assert spec.target_lufs == -14.0 and spec.audio_format == song_pb2.AUDIO_FORMAT_MP3
    assert (spec.model, spec.options_field, spec.style_audio) == ("", None, None)
    explicit = _seconds(3)
    explicit.cfg_strength, explicit.steps, explicit.model = 0.0, 4, "diffrhythm2"
    spec = song_spec(explicit, "job-2", 1)
    assert (spec.cfg_strength, spec.max_seconds, spec.steps, spec.model) == (0.0, 3.0, 4, "diffrhythm2")


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
        ({"style_prompt": "p" * 1001}, "style_prompt"),
        ({"style_audio": b"x" * ((3 << 20) + 1), "style_prompt": ""}, "style_audio"),
        ({"reference_audio": b"x" * ((3 << 20) + 1)}, "reference_audio"),
        ({"steps": 1}, "steps"),
        ({"steps": 201}, "steps"),
        ({"cfg_strength": 20.5}, "cfg_strength"),
        ({"cfg_strength": float("nan")}, "cfg_strength"),
        ({"format": 9}, "format"),
        ({"target_lufs": 3}, "target_lufs"),
    ],
)
def test_each_bad_field_is_named(changes: dict, field: str) -> None:
    request = song_pb2.SongRequest(lyrics="hello", style_prompt="pop")
    for name, value in changes.items():
        setattr(request, name, value)
    assert [v.field for v in _violations(request)][:1] == [field]


@pytest.mark.parametrize("seconds", [0.0001 - 1, 601])
def test_a_length_out_of_range_is_named(seconds: float) -> None:
    assert [v.field for v in _violations(_seconds(seconds))] == ["max_duration"]


def test_missing_style_and_several_problems_together() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        validate_request(song_pb2.SongRequest(lyrics="hello", steps=500), RequestLimits())
    assert [v.field for v in caught.value.violations] == ["steps"]
    assert [v.field for v in _violations(song_pb2.SongRequest(lyrics="hello"))] == ["style"]
    both = song_pb2.SongRequest(lyrics="hello", style_prompt="pop", style_audio=b"RIFF")
    assert [v.field for v in _violations(both)] == ["style"]


def test_inputs_the_model_cannot_use_are_named() -> None:
    lyrics = song_pb2.SongRequest(lyrics="hello", style_prompt="pop")
    assert [v.field for v in _violations(lyrics, TEXT_AND_MELODY)] == ["lyrics"]
    reference = song_pb2.SongRequest(style_prompt="pop", reference_audio=b"RIFF")
    assert [v.field for v in _violations(reference, TEXT_AND_MELODY)] == ["reference_audio"]
    no_prompt = song_pb2.SongRequest(style_audio=b"RIFF")
    assert [v.field for v in _violations(no_prompt, TEXT_AND_MELODY)] == ["style_prompt"]
    melody = song_pb2.SongRequest(style_prompt="pop", style_audio=b"RIFF")
    validate_for_model(melody, TEXT_AND_MELODY, RequestLimits())


def test_options_of_another_family_are_named() -> None:
    request = song_pb2.SongRequest(lyrics="hello", style_prompt="pop")
    request.musicgen.top_k = 10
    found = _violations(request)
    assert [v.field for v in found] == ["musicgen"] and "diffrhythm2" in found[0].description
