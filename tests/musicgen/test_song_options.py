"""The song request's MusicGen options are the engine's: every engine option but the stage-level prompt
codes is a field of MusicGenOptions, and the message a SongRequest carries reaches the engine the same
in process and over the generation stage's wire."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gateway.validation import song_spec
from services.diffusion.families import GENERATION_FAMILIES
from services.diffusion.musicgen.options import MusicgenOptions, parse_options
from services.diffusion.servicer import generation_request
from services.runtime.codec import tensor_to_proto
from services.runtime.errors import InvalidArgumentError
from songsmith.v1 import diffusion_pb2, musicgen_pb2, song_pb2


def test_every_engine_option_is_a_field_of_the_song_options() -> None:
    engine = {field.name for field in dataclasses.fields(MusicgenOptions)}
    message = {field.name for field in musicgen_pb2.MusicGenOptions.DESCRIPTOR.fields}
    assert engine - message == {"prompt_codes"}
    assert message <= engine
    song_arm = song_pb2.SongRequest.DESCRIPTOR.fields_by_name["musicgen"]
    stage_arm = diffusion_pb2.GenerateLatentsRequest.DESCRIPTOR.fields_by_name["musicgen"]
    assert song_arm.message_type is stage_arm.message_type is musicgen_pb2.MusicGenOptions.DESCRIPTOR


def _wire_options(spec) -> MusicgenOptions:
    """The options as the generation stage's servicer reads them from the gateway's wire request."""
    message = diffusion_pb2.GenerateLatentsRequest(seed=spec.seed)
    getattr(message, spec.options_field).CopyFrom(spec.options)
    received = diffusion_pb2.GenerateLatentsRequest.FromString(message.SerializeToString())
    return generation_request(received, "musicgen").options


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        (musicgen_pb2.MusicGenOptions(), MusicgenOptions()),
        (musicgen_pb2.MusicGenOptions(greedy=True), MusicgenOptions(greedy=True)),
        (
            musicgen_pb2.MusicGenOptions(top_k=40, top_p=0.5, temperature=0.75),
            MusicgenOptions(top_k=40, top_p=0.5, temperature=0.75),
        ),
        (musicgen_pb2.MusicGenOptions(temperature=0.0), MusicgenOptions(temperature=0.0)),
    ],
    ids=["defaults", "greedy", "sampling", "temperature-zero-is-kept"],
)
def test_song_options_reach_the_engine_in_process_and_over_the_wire(sent, expected) -> None:
    request = song_pb2.SongRequest(style_prompt="lofi", musicgen=sent)
    spec = song_spec(request, "job", 3)
    assert spec.options_field == "musicgen"
    in_process = GENERATION_FAMILIES.parse_options("musicgen", spec.options_field, spec.options)
    assert in_process == expected == _wire_options(spec)


def test_defaults_are_audiocrafts() -> None:
    assert parse_options(musicgen_pb2.MusicGenOptions()) == MusicgenOptions(
        greedy=False, top_k=250, top_p=0.0, temperature=1.0
    )


def test_out_of_range_options_name_their_song_fields() -> None:
    options = parse_options(musicgen_pb2.MusicGenOptions(top_k=3000, top_p=2.0, temperature=0.0))
    fields = [violation.field for violation in options.violations(vocab_size=2048)]
    assert fields == ["musicgen.top_k", "musicgen.temperature", "musicgen.top_p"]
    assert (
        parse_options(musicgen_pb2.MusicGenOptions(top_k=2048, top_p=1.0, temperature=10.0)).violations(2048)
        == []
    )


def test_prompt_codes_travel_as_the_stage_requests_reference() -> None:
    """At the stage level a recording's codes are the generic `reference`; another family's options
    are refused on their arm."""
    codes = np.arange(12, dtype=np.int64).reshape(3, 4)
    message = diffusion_pb2.GenerateLatentsRequest(reference=[tensor_to_proto(codes)])
    assert np.array_equal(generation_request(message, "musicgen").reference, codes)
    other = diffusion_pb2.GenerateLatentsRequest()
    other.diffrhythm1.SetInParent()
    with pytest.raises(InvalidArgumentError) as caught:
        generation_request(other, "musicgen")
    assert [v.field for v in caught.value.violations] == ["diffrhythm1"]
