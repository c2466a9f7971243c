"""The StyleEncoder service through a real StageServer on 127.0.0.1 and a real channel."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import soundfile as sf
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from grpc_status import rpc_status

from services.runtime.codec import MAX_CHUNK_BYTES, proto_to_numpy
from services.runtime.config import MIB, load_config
from services.style.muq_mulan.engine import StyleEngine
from services.style.server import SERVICE_NAME, StyleConfig, build_spec
from songsmith.v1 import style_pb2, style_pb2_grpc
from tests.helpers import health_status, running_stage
from tests.style.conftest import CHECKPOINT, FIXTURE, expected

MAX_PROMPT = 300
MAX_SECONDS = 20.0
MAX_BYTES = 3 * MIB // 2
NOISE_CLICK = FIXTURE / "audio" / "clip_b_noise_click.wav"  # 12 s, 1.1 MB
SYNTH = FIXTURE / "audio" / "clip_c_synth.wav"  # 25 s, 2.4 MB


def config(model_dir: Path) -> StyleConfig:
    return StyleConfig(
        port=0,
        metrics_port=0,
        drain_delay_s=0,
        model_dir=str(model_dir),
        text_cache_size=8,
        max_prompt_chars=MAX_PROMPT,
        max_audio_seconds=MAX_SECONDS,
        max_audio_bytes=MAX_BYTES,
    )


@pytest.fixture(scope="module")
def channel() -> Iterator[grpc.Channel]:
    """A channel to a loaded style server on the fixture model."""
    spec_config = config(CHECKPOINT)
    with (
        running_stage(build_spec(spec_config), spec_config) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as opened,
    ):
        yield opened


@pytest.fixture
def stub(channel: grpc.Channel) -> style_pb2_grpc.StyleEncoderServiceStub:
    return style_pb2_grpc.StyleEncoderServiceStub(channel)


def audio_stream(
    data: bytes, piece: int = MAX_CHUNK_BYTES, crop: int = style_pb2.AUDIO_CROP_WHOLE, seed: int = 0
) -> Iterator[style_pb2.EmbedAudioRequest]:
    yield style_pb2.EmbedAudioRequest(options=style_pb2.AudioEmbedOptions(crop=crop, seed=seed, job_id="t"))
    for start in range(0, len(data), piece):
        yield style_pb2.EmbedAudioRequest(data=data[start : start + piece])


def bad_request(call) -> tuple[grpc.StatusCode, list[tuple[str, str]]]:
    """Run `call`, expect it to fail, and return its code and BadRequest field violations."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    status = rpc_status.from_call(caught.value)
    violations: list[tuple[str, str]] = []
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            request = error_details_pb2.BadRequest()
            detail.Unpack(request)
            violations += [(v.field, v.description) for v in request.field_violations]
    return caught.value.code(), violations


def invalid_field(call) -> str:
    code, violations = bad_request(call)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert len(violations) == 1
    return violations[0][0]


def test_serving_once_loaded(channel: grpc.Channel) -> None:
    assert health_status(channel, SERVICE_NAME) == health_pb2.HealthCheckResponse.SERVING


def test_embed_text_and_its_cache(stub: style_pb2_grpc.StyleEncoderServiceStub, case) -> None:
    prompt = case["text"]["prompts"][1]
    first = stub.EmbedText(style_pb2.EmbedTextRequest(prompt=prompt, job_id="job-1"), timeout=30)
    second = stub.EmbedText(style_pb2.EmbedTextRequest(prompt=prompt), timeout=30)
    vector = proto_to_numpy(first.embedding)
    assert vector.dtype == np.float32 and vector.shape == (512,)
    np.testing.assert_allclose(vector, expected("text_single")[1], rtol=0, atol=1e-5)
    assert (first.cached, second.cached) == (False, True)
    np.testing.assert_array_equal(proto_to_numpy(second.embedding), vector)


def test_embed_audio_streams_pieces(stub: style_pb2_grpc.StyleEncoderServiceStub) -> None:
    data = NOISE_CLICK.read_bytes()
    reply = stub.EmbedAudio(audio_stream(data, piece=256 * 1024), timeout=60)
    np.testing.assert_allclose(
        proto_to_numpy(reply.embedding), expected("audio_clip_b_noise_click_embedding"), rtol=0, atol=1e-5
    )
    assert (reply.clips, reply.audio_seconds) == (2, pytest.approx(12.0))


def test_embed_audio_random_crop_is_seeded(
    stub: style_pb2_grpc.StyleEncoderServiceStub, engine: StyleEngine
) -> None:
    data = NOISE_CLICK.read_bytes()
    crop = style_pb2.AUDIO_CROP_RANDOM_10S
    first = stub.EmbedAudio(audio_stream(data, crop=crop, seed=11), timeout=60)
    again = stub.EmbedAudio(audio_stream(data, crop=crop, seed=11), timeout=60)
    assert first.clips == 1
    np.testing.assert_array_equal(proto_to_numpy(first.embedding), proto_to_numpy(again.embedding))
    local = engine.embed_audio(data, crop="random", seed=11)
    np.testing.assert_allclose(proto_to_numpy(first.embedding), local.vector, rtol=0, atol=1e-6)


def test_prompt_errors(stub: style_pb2_grpc.StyleEncoderServiceStub) -> None:
    empty = style_pb2.EmbedTextRequest(prompt="")
    assert invalid_field(lambda: stub.EmbedText(empty, timeout=10)) == "prompt"
    too_long = style_pb2.EmbedTextRequest(prompt="y" * (MAX_PROMPT + 1))
    assert invalid_field(lambda: stub.EmbedText(too_long, timeout=10)) == "prompt"


def test_audio_content_errors(stub: style_pb2_grpc.StyleEncoderServiceStub) -> None:
    assert invalid_field(lambda: stub.EmbedAudio(audio_stream(b"RIFF garbage" * 50), timeout=10)) == "data"
    assert invalid_field(lambda: stub.EmbedAudio(audio_stream(b""), timeout=10)) == "data"
    long_recording = io.BytesIO()
    sf.write(long_recording, np.zeros(8000 * 25, np.int16), 8000, format="WAV", subtype="PCM_16")
    data = long_recording.getvalue()
    code, violations = bad_request(lambda: stub.EmbedAudio(audio_stream(data), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert violations == [("data", "the recording lasts 25.0 s; the duration limit is 20 s")]


def test_audio_byte_cap_stops_reading_early(stub: style_pb2_grpc.StyleEncoderServiceStub) -> None:
    sent = 0
    total = 1000

    def endless() -> Iterator[style_pb2.EmbedAudioRequest]:
        nonlocal sent
        yield style_pb2.EmbedAudioRequest(options=style_pb2.AudioEmbedOptions())
        for _ in range(total):
            sent += 1
            yield style_pb2.EmbedAudioRequest(data=bytes(64 * 1024))

    code, violations = bad_request(lambda: stub.EmbedAudio(endless(), timeout=30))
    assert (code, violations[0][0]) == (grpc.StatusCode.INVALID_ARGUMENT, "data")
    assert "exceeds the limit" in violations[0][1]
    assert sent < total
    assert invalid_field(lambda: stub.EmbedAudio(audio_stream(SYNTH.read_bytes()), timeout=10)) == "data"


def test_stream_protocol_errors(stub: style_pb2_grpc.StyleEncoderServiceStub) -> None:
    oversized = iter(
        [
            style_pb2.EmbedAudioRequest(options=style_pb2.AudioEmbedOptions()),
            style_pb2.EmbedAudioRequest(data=bytes(MAX_CHUNK_BYTES + 1)),
        ]
    )
    assert invalid_field(lambda: stub.EmbedAudio(oversized, timeout=10)) == "data"
    data_first = iter([style_pb2.EmbedAudioRequest(data=b"RIFF")])
    assert invalid_field(lambda: stub.EmbedAudio(data_first, timeout=10)) == "options"
    options = style_pb2.EmbedAudioRequest(options=style_pb2.AudioEmbedOptions())
    assert invalid_field(lambda: stub.EmbedAudio(iter([options, options]), timeout=10)) == "options"
    assert invalid_field(lambda: stub.EmbedAudio(iter([]), timeout=10)) == "options"
    data = NOISE_CLICK.read_bytes()
    assert invalid_field(lambda: stub.EmbedAudio(audio_stream(data, crop=7), timeout=10)) == "options.crop"


def test_no_model_is_failed_precondition(tmp_path: Path) -> None:
    spec_config = config(tmp_path)
    with (
        running_stage(build_spec(spec_config), spec_config) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as opened,
    ):
        stub = style_pb2_grpc.StyleEncoderServiceStub(opened)
        code, _ = bad_request(lambda: stub.EmbedText(style_pb2.EmbedTextRequest(prompt="x"), timeout=10))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        code, _ = bad_request(lambda: stub.EmbedAudio(audio_stream(b"abc"), timeout=10))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert health_status(opened, SERVICE_NAME) == health_pb2.HealthCheckResponse.NOT_SERVING


def test_config_from_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = load_config(StyleConfig, [])
    assert (defaults.port, defaults.metrics_port) == (50052, 9402)
    limits = (defaults.max_prompt_chars, defaults.max_audio_seconds, defaults.max_audio_bytes)
    assert limits == (1000, 600.0, 32 * MIB)
    monkeypatch.setenv("SONGSMITH_TEXT_CACHE_SIZE", "5")
    parsed = load_config(StyleConfig, ["--model-dir", "/models/mulan", "--max-audio-seconds", "30"])
    assert (parsed.model_dir, parsed.max_audio_seconds, parsed.text_cache_size) == ("/models/mulan", 30.0, 5)
