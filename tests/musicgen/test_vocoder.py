"""MusicGen's vocoder stage: EnCodec audio equal to the reference, streamed audio equal to the one-shot
decode for any arrival pattern, encoding for continuation, and every refusal."""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
import soundfile as sf
import torch

from services.runtime.codec import proto_to_numpy
from services.runtime.errors import InvalidArgumentError
from services.runtime.interceptor import field_violations
from services.vocoder.families import VOCODER_FAMILIES
from services.vocoder.musicgen import codes_from_file
from services.vocoder.musicgen.encodec import upsampling_reach
from services.vocoder.musicgen.engine import MusicgenVocoderEngine
from services.vocoder.server import VocoderConfig, build_spec
from songsmith.v1 import vocoder_pb2, vocoder_pb2_grpc
from tests.helpers import running_stage
from tests.musicgen.conftest import NAMES, all_cases, find_case

LOOK_AHEAD_FRAMES = 4


@pytest.mark.parametrize(("name", "case_name"), all_cases())
def test_audio_equals_the_reference(name, case_name, fixtures, vocoder_engines):
    fixture = fixtures[name]
    case = find_case(fixture, case_name)
    codes = codes_from_file(fixture.array(case["expected_codes"]))
    audio = vocoder_engines[name].decode(codes)
    expected = fixture.array(case["expected_audio"])
    assert audio.dtype == np.float32 and audio.shape == tuple(case["audio_shape"])
    assert np.abs(audio - expected).max() <= 1e-5


def stream_song(engine: MusicgenVocoderEngine, codes: np.ndarray, sizes) -> tuple[np.ndarray, list[int]]:
    """Push `codes` in pieces of the given sizes (cycled), then finish; the concatenated audio and how
    many frames of audio were out after each push."""
    decoder = engine.stream()
    pieces, released, sent, turn = [], [], 0, 0
    while sent < len(codes):
        size = sizes[turn % len(sizes)]
        turn += 1
        for piece in decoder.push(codes[sent : sent + size]):
            assert piece.offset == sum(p.shape[1] for p in pieces)
            pieces.append(piece.samples)
        sent += size
        released.append(decoder.emitted_samples // engine.samples_per_frame)
    pieces += [piece.samples for piece in decoder.finish()]
    return np.concatenate(pieces, axis=1), released


@pytest.mark.parametrize("name", ["musicgen-tiny", "musicgen-stereo-tiny"])
@pytest.mark.parametrize("sizes", [[50], [1], [7, 0, 13], [3, 29, 1, 64], [200]], ids=str)
def test_streamed_audio_equals_the_one_shot_decode(name, sizes, vocoder_engines):
    engine = vocoder_engines[name]
    codes = np.random.default_rng(len(sizes)).integers(0, 2048, (137, engine.codebooks))
    streamed, _ = stream_song(engine, codes, sizes)
    one_shot = engine.decode(codes)
    assert streamed.shape == one_shot.shape
    assert np.abs(streamed - one_shot).max() <= 1e-6


@pytest.mark.parametrize("frames", [1, 2, 3, 4, 5, 9])
def test_very_short_songs_stream_exactly(frames, vocoder_engines):
    engine = vocoder_engines["musicgen-tiny"]
    codes = np.random.default_rng(frames).integers(0, 2048, (frames, 4))
    streamed, _ = stream_song(engine, codes, [1])
    assert np.abs(streamed - engine.decode(codes)).max() <= 1e-6


def test_audio_trails_the_codes_by_four_frames(vocoder_engines):
    engine = vocoder_engines["musicgen-tiny"]
    assert upsampling_reach(engine.codec.decoder, engine.samples_per_frame) == (1, 1)
    codes = np.random.default_rng(3).integers(0, 2048, (120, 4))
    _, released = stream_song(engine, codes, [10])
    assert released == [max(0, received - LOOK_AHEAD_FRAMES) for received in range(10, 121, 10)]


def test_fixture_codes_stream_to_the_reference_audio(fixtures, vocoder_engines):
    fixture = fixtures["musicgen-stereo-tiny"]
    case = find_case(fixture, "sampled")
    codes = codes_from_file(fixture.array(case["expected_codes"]))
    streamed, _ = stream_song(vocoder_engines["musicgen-stereo-tiny"], codes, [6])
    assert np.abs(streamed - fixture.array(case["expected_audio"])).max() <= 1e-5


def test_streaming_memory_stays_flat(vocoder_engines):
    engine = vocoder_engines["musicgen-tiny"]
    decoder = engine.stream()
    rng = np.random.default_rng(5)
    for _ in range(12):
        decoder.push(rng.integers(0, 2048, (50, 4)))
        assert decoder.buffered_frames <= 10
    assert decoder.emitted_samples == (600 - LOOK_AHEAD_FRAMES) * 640


def test_stereo_rows_decode_to_left_and_right(vocoder_engines):
    stereo, mono = vocoder_engines["musicgen-stereo-tiny"], vocoder_engines["musicgen-tiny"]
    codes = np.random.default_rng(7).integers(0, 2048, (30, 8))
    audio = stereo.decode(codes)
    assert audio.shape == (2, 30 * 640)
    even = torch.from_numpy(np.ascontiguousarray(codes[:, 0::2].T))[None]
    with torch.inference_mode():
        left = stereo.codec.decode(even)[0].numpy()
    np.testing.assert_allclose(audio[:1], left, atol=1e-6)
    assert not np.allclose(audio[0], audio[1])
    assert mono.decode(codes[:, 0::2]).shape == (1, 30 * 640)


def assert_invalid(call, field: str) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        call()
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [violation.field for violation in raised.value.violations] == [field]


@pytest.mark.parametrize(
    "codes",
    [
        np.zeros((5, 3), np.int64),
        np.zeros((5, 4), np.float32),
        np.full((5, 4), 2048),
        np.full((5, 4), -1),
        np.zeros(5),
    ],
    ids=["codebooks", "float", "too-big", "negative", "1-d"],
)
def test_bad_codes_are_refused(codes, vocoder_engines):
    engine = vocoder_engines["musicgen-tiny"]
    assert_invalid(lambda: engine.decode(codes), "latents")
    assert_invalid(lambda: engine.stream().push(codes), "latents")


def test_songs_over_the_cap_are_refused(fixtures):
    engine = MusicgenVocoderEngine.load(fixtures["musicgen-tiny"].folder, max_frames=60)
    decoder = engine.stream()
    decoder.push(np.zeros((50, 4), np.int64))
    assert_invalid(lambda: decoder.push(np.zeros((11, 4), np.int64)), "latents")
    assert_invalid(lambda: engine.decode(np.zeros((61, 4), np.int64)), "latents")


def test_encode_gives_codes_per_frame(vocoder_engines):
    engine = vocoder_engines["musicgen-tiny"]
    audio = np.random.default_rng(2).uniform(-0.5, 0.5, (1, 32000)).astype(np.float32)
    codes = engine.encode(audio, 32000)
    assert codes.shape == (50, 4) and codes.dtype == np.int64
    assert codes.min() >= 0 and codes.max() < 2048
    np.testing.assert_array_equal(engine.encode(np.concatenate([audio, audio]), 32000), codes)
    assert engine.encode(audio[:, :1000], 32000).shape == (2, 4)


def test_stereo_encode_interleaves_left_and_right(vocoder_engines):
    engine = vocoder_engines["musicgen-stereo-tiny"]
    rng = np.random.default_rng(4)
    left, right = (rng.uniform(-0.5, 0.5, (1, 6400)).astype(np.float32) for _ in range(2))
    codes = engine.encode(np.concatenate([left, right]), 32000)
    assert codes.shape == (10, 8)
    np.testing.assert_array_equal(codes[:, 0::2], engine.encode(np.concatenate([left, left]), 32000)[:, 0::2])
    np.testing.assert_array_equal(
        codes[:, 1::2], engine.encode(np.concatenate([right, right]), 32000)[:, 1::2]
    )


def test_encode_recording_resamples_any_file(vocoder_engines):
    engine = vocoder_engines["musicgen-tiny"]
    buffer = io.BytesIO()
    sf.write(buffer, np.random.default_rng(8).uniform(-0.3, 0.3, (44100, 2)), 44100, format="FLAC")
    assert engine.encode_recording(buffer.getvalue()).shape == (50, 4)


@pytest.mark.parametrize("seconds_or_bytes", [b"", b"garbage", 31.0], ids=["empty", "garbage", "too-long"])
def test_bad_recordings_to_encode_are_refused(seconds_or_bytes, vocoder_engines):
    data = seconds_or_bytes
    if isinstance(seconds_or_bytes, float):
        buffer = io.BytesIO()
        sf.write(buffer, np.zeros(int(8000 * seconds_or_bytes)), 8000, format="WAV")
        data = buffer.getvalue()
    assert_invalid(lambda: vocoder_engines["musicgen-tiny"].encode_recording(data), "data")


@pytest.mark.parametrize("name", NAMES)
def test_family_is_detected(name, fixtures):
    assert VOCODER_FAMILIES.detect(fixtures[name].folder).name == "musicgen"


def test_encode_over_grpc_equals_the_engine(fixtures, vocoder_engines):
    buffer = io.BytesIO()
    sf.write(buffer, np.random.default_rng(9).uniform(-0.3, 0.3, (3 * 44100, 2)), 44100, format="WAV")
    data = buffer.getvalue()
    folder = fixtures["musicgen-tiny"].folder
    config = VocoderConfig(port=0, drain_delay_s=0, model_dir=str(folder))

    def upload():
        yield vocoder_pb2.EncodeRequest(options=vocoder_pb2.EncodeOptions(job_id="continue-1"))
        for start in range(0, len(data), 1 << 20):
            yield vocoder_pb2.EncodeRequest(data=data[start : start + (1 << 20)])

    empty = iter([vocoder_pb2.EncodeRequest(options=vocoder_pb2.EncodeOptions())])
    with (
        running_stage(build_spec(config), config) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        stub = vocoder_pb2_grpc.VocoderServiceStub(channel)
        replies = list(stub.Encode(upload(), timeout=120))
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.Encode(empty, timeout=60))
    codes = np.concatenate([proto_to_numpy(reply.frames) for reply in replies])
    np.testing.assert_array_equal(codes, vocoder_engines["musicgen-tiny"].encode_recording(data))
    assert codes.dtype == np.int64 and codes.shape == (150, 4)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(caught.value)] == ["data"]
