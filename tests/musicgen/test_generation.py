"""MusicGen's generation stage: codes equal to the reference for every fixture case, streaming in
blocks, resuming, extended generation across windows, continuation, batching, and every refusal."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import grpc
import numpy as np
import pytest

from services.diffusion.engine import GenerationRequest
from services.diffusion.families import GENERATION_FAMILIES
from services.diffusion.musicgen.engine import MusicgenEngine
from services.diffusion.musicgen.options import DEFAULT_TOP_K, MusicgenOptions, parse_options
from services.diffusion.musicgen.windows import Window, plan_windows, steps_before
from services.runtime.cancellation import CancellationToken
from services.runtime.errors import CancelledError, InvalidArgumentError
from services.runtime.model_info import MELODY_AUDIO, REFERENCE_AUDIO, STYLE_TEXT
from tests.musicgen.conftest import FIXTURES, all_cases, case_request, find_case, song_codes


@pytest.mark.parametrize(("name", "case_name"), all_cases())
def test_codes_equal_the_reference(name, case_name, fixtures, generation_engines):
    fixture = fixtures[name]
    case = find_case(fixture, case_name)
    blocks = list(generation_engines[name].generate(case_request(fixture, case)))
    codes = song_codes(blocks)
    assert codes.dtype == np.int64
    np.testing.assert_array_equal(codes.T, fixture.array(case["expected_codes"]))


def test_blocks_stream_one_second_each(fixtures, generation_engines):
    fixture = fixtures["musicgen-tiny"]
    request = case_request(fixture, find_case(fixture, "sampled"), max_frames=120)
    blocks = list(generation_engines["musicgen-tiny"].generate(request))
    assert [block.index for block in blocks] == [0, 1, 2]
    assert [len(block.frames) for block in blocks] == [50, 50, 20]
    assert [block.frames_done for block in blocks] == [50, 100, 120]
    assert [block.final for block in blocks] == [False, False, True]
    assert {block.max_blocks for block in blocks} == {3}
    assert all(block.frames.shape[1] == 4 for block in blocks)


def test_first_block_arrives_before_the_last_step(fixtures, generation_engines):
    """The iterator yields block 0 as soon as frame 49 is final (step 52), long before the song ends."""
    fixture = fixtures["musicgen-tiny"]
    token = CancellationToken()
    request = case_request(fixture, find_case(fixture, "greedy"), max_frames=150)
    blocks = generation_engines["musicgen-tiny"].generate(request, token)
    first = next(blocks)
    assert first.index == 0 and not first.final
    token.cancel()
    with pytest.raises(CancelledError):
        next(blocks)


@pytest.mark.parametrize(
    ("name", "case_name"),
    [
        ("musicgen-tiny", "sampled_t07_k50"),
        ("musicgen-stereo-tiny", "sampled"),
        ("musicgen-melody-tiny", "sampled"),
    ],
)
def test_resume_from_a_prefix_gives_the_same_song(name, case_name, fixtures, generation_engines):
    fixture, engine = fixtures[name], generation_engines[name]
    request = case_request(fixture, find_case(fixture, case_name), max_frames=130)
    whole = list(engine.generate(request))
    for kept in (1, 2):
        prefix = tuple(block.frames for block in whole[:kept])
        rest = list(engine.generate(replace(request, prefix=prefix)))
        assert [block.index for block in rest] == [block.index for block in whole[kept:]]
        np.testing.assert_array_equal(song_codes(rest), song_codes(whole[kept:]))


def test_window_plan_follows_audiocraft():
    assert plan_windows(1500, 0, 1500, 900) == [Window(0, 1500, 0)]
    assert plan_windows(2250, 0, 1500, 900) == [Window(0, 1500, 0), Window(900, 1350, 600)]
    assert plan_windows(4000, 250, 1500, 900) == [
        Window(0, 1500, 250),
        Window(900, 1500, 600),
        Window(1800, 1500, 600),
        Window(2700, 1300, 600),
    ]
    windows = plan_windows(130, 0, 40, 24)
    assert [(w.first_new, w.end) for w in windows] == [(0, 40), (40, 64), (64, 88), (88, 112), (112, 130)]
    assert steps_before(windows, 0, 3) == 0
    assert steps_before(windows, 50, 3) == 43 + 10
    assert steps_before(windows, 100, 3) == 43 + 27 + 27 + 12


def long_song_engine(generation_engines, name: str = "musicgen-tiny") -> MusicgenEngine:
    """The fixture's LM with a 40-frame window and a 24-frame stride (AudioCraft's 30 s / 18 s, scaled)."""
    engine = generation_engines[name]
    return MusicgenEngine(engine.lm, info=engine.info, window=40, stride=24)


def test_long_song_windows_continue_the_previous_tail(fixtures, generation_engines):
    """A greedy song over three windows equals chained continuations: each window is the model prompted
    with the last 16 frames of the one before, as AudioCraft's extended generation does."""
    fixture = fixtures["musicgen-tiny"]
    engine = long_song_engine(generation_engines)
    request = case_request(fixture, find_case(fixture, "greedy"), max_frames=70)
    song = song_codes(engine.generate(request))
    assert song.shape == (70, 4)
    first = song_codes(engine.generate(replace(request, max_frames=40)))
    np.testing.assert_array_equal(song[:40], first)
    for start, frames in ((24, 40), (48, 22)):
        prompt = replace(request.options, prompt_codes=song[start : start + 16])
        window = song_codes(engine.generate(replace(request, max_frames=frames, options=prompt)))
        np.testing.assert_array_equal(window, song[start : start + frames])


@pytest.mark.parametrize("name", ["musicgen-tiny", "musicgen-melody-tiny"])
def test_long_sampled_song_resumes_across_window_seams(name, fixtures, generation_engines):
    fixture = fixtures[name]
    engine = long_song_engine(generation_engines, name)
    request = case_request(fixture, find_case(fixture, "sampled"), max_frames=130)
    whole = list(engine.generate(request))
    song = song_codes(whole)
    assert song.shape == (130, 4)
    assert not np.array_equal(song[40:64], song[16:40])
    for kept in (1, 2):
        rest = song_codes(engine.generate(replace(request, prefix=tuple(b.frames for b in whole[:kept]))))
        np.testing.assert_array_equal(rest, song[50 * kept :])


def test_continuation_starts_with_the_prompt(fixtures, generation_engines):
    fixture = fixtures["musicgen-tiny"]
    engine = generation_engines["musicgen-tiny"]
    prompt = fixture.array("expected_codes_sampled.npy").T[:20]
    base = case_request(fixture, find_case(fixture, "sampled"), max_frames=80)
    request = replace(base, options=replace(base.options, prompt_codes=prompt))
    blocks = list(engine.generate(request))
    song = song_codes(blocks)
    assert song.shape == (80, 4)
    np.testing.assert_array_equal(song[:20], prompt)
    np.testing.assert_array_equal(song_codes(engine.generate(request)), song)
    resumed = song_codes(engine.generate(replace(request, prefix=(blocks[0].frames,))))
    np.testing.assert_array_equal(resumed, song[50:])
    np.testing.assert_array_equal(song_codes(engine.generate(replace(base, reference=prompt))), song)


def test_a_reference_and_prompt_codes_together_are_refused(fixtures, generation_engines):
    request = good_request(fixtures)
    both = replace(
        request,
        reference=np.zeros((10, 4), np.int64),
        options=replace(request.options, prompt_codes=np.zeros((10, 4), np.int64)),
    )
    assert_invalid(generation_engines["musicgen-tiny"], both, "reference")


def test_batched_songs_equal_songs_alone(fixtures, generation_engines):
    fixture = fixtures["musicgen-tiny"]
    engine = generation_engines["musicgen-tiny"]
    first = case_request(fixture, find_case(fixture, "sampled"), max_frames=60)
    second = replace(
        case_request(fixture, find_case(fixture, "sampled_t07_k50"), max_frames=60), cfg_strength=1.0
    )
    batched = list(engine.generate_batch([first, second]))
    for index, request in enumerate((first, second)):
        alone = song_codes(engine.generate(request))
        np.testing.assert_array_equal(np.concatenate([step[index].frames for step in batched]), alone)


def test_model_info(generation_engines):
    assert generation_engines["musicgen-tiny"].info.inputs == (STYLE_TEXT, REFERENCE_AUDIO)
    assert generation_engines["musicgen-melody-tiny"].info.inputs == (
        STYLE_TEXT,
        MELODY_AUDIO,
        REFERENCE_AUDIO,
    )
    stereo = generation_engines["musicgen-stereo-tiny"].info
    assert (stereo.family, stereo.channels, stereo.sample_rate, stereo.frame_rate) == (
        "musicgen",
        2,
        32000,
        50.0,
    )


def test_family_is_detected_and_parses_its_options():
    family = GENERATION_FAMILIES.detect(FIXTURES / "musicgen-melody-tiny")
    assert family.name == "musicgen" and family.options_field == "musicgen"
    options = family.parse_options(SimpleNamespace(greedy=False, top_k=50, top_p=0.9, temperature=0.7))
    assert options == MusicgenOptions(top_k=50, top_p=0.9, temperature=0.7)


class ProtoLike:
    """Options as a proto3 message: scalars without presence raise ValueError from HasField."""

    def __init__(self, **fields):
        self.greedy, self.top_k, self.top_p, self.temperature = False, 0, 0.0, 0.0
        self.__dict__.update(fields)

    def HasField(self, name):  # noqa: N802 (protobuf's name)
        raise ValueError(f"{name} has no presence")


def test_unset_proto_fields_take_the_defaults():
    assert parse_options(ProtoLike()) == MusicgenOptions(top_k=DEFAULT_TOP_K, temperature=1.0)
    assert parse_options(ProtoLike(greedy=True, top_k=7)) == MusicgenOptions(greedy=True, top_k=7)
    assert parse_options(SimpleNamespace(temperature=0.0)).temperature == 0.0


def assert_invalid(engine: MusicgenEngine, request: GenerationRequest, field: str) -> None:
    """Generating `request` fails at the call with INVALID_ARGUMENT naming `field`."""
    with pytest.raises(InvalidArgumentError) as raised:
        engine.generate(request)
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in [violation.field for violation in raised.value.violations], raised.value.message


def good_request(fixtures) -> GenerationRequest:
    fixture = fixtures["musicgen-tiny"]
    return case_request(fixture, find_case(fixture, "sampled"), max_frames=100)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (MusicgenOptions(top_k=0), "musicgen.top_k"),
        (MusicgenOptions(top_k=2049), "musicgen.top_k"),
        (MusicgenOptions(temperature=0.0), "musicgen.temperature"),
        (MusicgenOptions(temperature=-1.0), "musicgen.temperature"),
        (MusicgenOptions(temperature=float("nan")), "musicgen.temperature"),
        (MusicgenOptions(temperature=11.0), "musicgen.temperature"),
        (MusicgenOptions(top_p=1.5), "musicgen.top_p"),
        (MusicgenOptions(prompt_codes=np.full((10, 4), 2048)), "musicgen.prompt_codes"),
        (MusicgenOptions(prompt_codes=np.zeros((10, 4), np.float32)), "musicgen.prompt_codes"),
        (MusicgenOptions(prompt_codes=np.zeros((100, 4), np.int64)), "musicgen.prompt_codes"),
    ],
)
def test_out_of_range_options_are_refused(options, field, fixtures, generation_engines):
    assert_invalid(
        generation_engines["musicgen-tiny"], replace(good_request(fixtures), options=options), field
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"cfg_strength": -0.5}, "cfg_strength"),
        ({"cfg_strength": 21.0}, "cfg_strength"),
        ({"cfg_strength": float("nan")}, "cfg_strength"),
        ({"max_frames": 15001}, "max_frames"),
        ({"seconds": -1.0, "max_frames": 0}, "seconds"),
        ({"seconds": 400.0, "max_frames": 0}, "max_frames"),
        ({"seed": -1}, "seed"),
        ({"style": np.zeros((5, 47), np.float32)}, "style"),
        ({"style": np.zeros((0, 48), np.float32)}, "style"),
        ({"style": np.full((5, 48), np.nan, np.float32)}, "style"),
        ({"style": None}, "style"),
        ({"tokens": np.array([1, 2, 3])}, "token_ids"),
        ({"melody": np.zeros((20, 12), np.float32)}, "melody"),
        ({"prefix": (np.zeros((50, 4), np.int64),) * 2}, "prefix"),
        ({"prefix": (np.zeros((40, 4), np.int64),)}, "prefix[0]"),
        ({"prefix": (np.zeros((50, 3), np.int64),)}, "prefix[0]"),
    ],
)
def test_bad_requests_are_refused(changes, field, fixtures, generation_engines):
    assert_invalid(generation_engines["musicgen-tiny"], replace(good_request(fixtures), **changes), field)


def test_melody_must_be_a_chroma(fixtures, generation_engines):
    fixture = fixtures["musicgen-melody-tiny"]
    request = case_request(fixture, find_case(fixture, "sampled"))
    assert_invalid(
        generation_engines["musicgen-melody-tiny"], replace(request, melody=np.zeros((20, 11))), "melody"
    )


def test_prefix_must_start_with_the_prompt(fixtures, generation_engines):
    request = good_request(fixtures)
    prompt = np.ones((10, 4), np.int64)
    request = replace(request, options=replace(request.options, prompt_codes=prompt))
    assert_invalid(
        generation_engines["musicgen-tiny"], replace(request, prefix=(np.zeros((50, 4), np.int64),)), "prefix"
    )


def test_default_length_is_seconds_or_30_s(generation_engines):
    engine = generation_engines["musicgen-tiny"]
    assert engine.total_frames(GenerationRequest(seconds=2.5)) == 125
    assert engine.total_frames(GenerationRequest()) == 1500
    assert engine.total_frames(GenerationRequest(max_frames=7, seconds=9.0)) == 7


@pytest.mark.parametrize("name", ["musicgen-tiny", "musicgen-stereo-tiny"])
def test_folded_cross_attention_gives_the_reference_codes(name, fixtures):
    """The folded cross-attention (query projection folded into the keys, output projection into the
    values; chosen for short prompts) gives the same codes as the ordinary form, batched or not."""
    fixture = fixtures[name]
    engine = MusicgenEngine.load(fixture.folder)
    engine.lm.fold_cross_attention = True
    requests = [case_request(fixture, case) for case in fixture.case["cases"]]
    for request, case in zip(requests, fixture.case["cases"], strict=True):
        codes = song_codes(engine.generate(request))
        np.testing.assert_array_equal(codes.T, fixture.array(case["expected_codes"]))
    same_length = [request for request in requests if request.max_frames == requests[0].max_frames]
    batched = list(engine.generate_batch(same_length))
    for index, request in enumerate(same_length):
        alone = song_codes(engine.generate(request))
        np.testing.assert_array_equal(np.concatenate([step[index].frames for step in batched]), alone)
