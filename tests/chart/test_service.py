"""The chart stage over real gRPC on 127.0.0.1: both song forms, progress, charts, every error status."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import soundfile
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health_pb2

from services.chart.server import SERVICE_NAME, ChartConfig, build_spec
from services.runtime.codec import MAX_CHUNK_BYTES, iter_tensor_chunks, proto_to_numpy
from services.runtime.config import MIB
from services.runtime.interceptor import field_violations
from services.runtime.model_info import sha256_file
from songsmith.v1 import chart_pb2, chart_pb2_grpc, model_pb2, model_pb2_grpc, tensor_pb2
from tests.chart.conftest import latents_tolerance
from tests.helpers import health_status, running_stage

MAX_SECONDS = 30.0


@pytest.fixture(scope="module")
def channel(fixture_dir: Path) -> Iterator[grpc.Channel]:
    """A channel to a loaded (and warmed-up) chart server over the fixture model."""
    config = ChartConfig(
        port=0,
        drain_delay_s=0,
        model_dir=str(fixture_dir),
        max_audio_seconds=MAX_SECONDS,
        max_audio_bytes=4 * MIB,
    )
    with running_stage(build_spec(config), config) as server:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        assert health_status(channel, SERVICE_NAME) == health_pb2.HealthCheckResponse.SERVING
        yield channel
        channel.close()


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> chart_pb2_grpc.ChartServiceStub:
    """The ChartService of the fixture's server."""
    return chart_pb2_grpc.ChartServiceStub(channel)


def test_the_stage_serves_model_info(channel: grpc.Channel, fixture_dir: Path) -> None:
    reply = model_pb2_grpc.ModelInfoServiceStub(channel).GetModelInfo(
        model_pb2.GetModelInfoRequest(), timeout=10
    )
    model = reply.model
    assert (model.name, model.family, list(model.families)) == ("mug-tiny", "mug", ["mug"])
    assert model.revision == sha256_file(fixture_dir / "model.ckpt")
    assert (model.sample_rate, model.channels) == (22050, 1)
    assert model.frame_rate == pytest.approx(22050 / (128 * 64))
    assert list(model.inputs) == []


def _options(**fields) -> chart_pb2.ChartOptions:
    defaults = {
        "features": chart_pb2.ChartFeatures(
            sr=4.2,
            rank_status=chart_pb2.RANK_STATUS_RANKED,
            hb=True,
            ln_ratio=0.3,
            stream=True,
            stream_ett=20,
        ),
        "seed": 1234,
        "steps": 12,
        "guidance": 5.0,
        "job_id": "chart-test",
    }
    defaults.update(fields)
    return chart_pb2.ChartOptions(**defaults)


def _encoded(options: chart_pb2.ChartOptions, data: bytes) -> list[chart_pb2.GenerateChartsRequest]:
    pieces = [data[i : i + MAX_CHUNK_BYTES] for i in range(0, len(data), MAX_CHUNK_BYTES)] or [b""]
    return [chart_pb2.GenerateChartsRequest(options=options)] + [
        chart_pb2.GenerateChartsRequest(encoded_audio=piece) for piece in pieces
    ]


def _pcm(options: chart_pb2.ChartOptions, samples: np.ndarray) -> list[chart_pb2.GenerateChartsRequest]:
    return [chart_pb2.GenerateChartsRequest(options=options)] + [
        chart_pb2.GenerateChartsRequest(pcm=chunk) for chunk in iter_tensor_chunks(samples)
    ]


def _call(stub, requests: list) -> list[chart_pb2.GenerateChartsResponse]:
    return list(stub.GenerateCharts(iter(requests), timeout=120))


def _charts(responses) -> list[chart_pb2.GeneratedChart]:
    return [r.chart for r in responses if r.WhichOneof("event") == "chart"]


def _wav(seconds: float, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(int(seconds * rate), np.float32), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def test_reference_case_over_grpc(stub, song_bytes: bytes, fixture_dir: Path, case: dict) -> None:
    responses = _call(stub, _encoded(_options(), song_bytes))
    progress = [r.progress for r in responses if r.WhichOneof("event") == "progress"]
    assert [(p.step, p.total_steps) for p in progress] == [(i, 13) for i in range(1, 14)]
    (chart,) = _charts(responses)
    assert responses[-1].chart == chart
    lines = [
        (f"{64 + 128 * h.column},192,{h.start_ms},128,0,{h.end_ms}:0:0:0:0:" if h.HasField("end_ms")
         else f"{64 + 128 * h.column},192,{h.start_ms},1,0,0:0:0:0:")
        for h in chart.hit_objects
    ]  # fmt: skip
    assert lines == case["hit_objects"]
    assert chart.osu.split("[HitObjects]\n")[1].splitlines() == case["hit_objects"]
    assert abs(chart.bpm - case["bpm"]) <= 1e-9 and abs(chart.offset_ms - case["offset_ms"]) <= 1e-9
    assert (chart.index, chart.seed, chart.keys, chart.version) == (0, 1234, 4, "AI v1")
    expected = np.load(fixture_dir / "expected_latents.npy")
    latents = proto_to_numpy(chart.latents, "latents")
    assert np.abs(latents - expected).max() <= latents_tolerance(expected)


def test_pcm_stream_gives_the_charts_of_the_encoded_song(stub, song_bytes: bytes) -> None:
    samples, rate = soundfile.read(io.BytesIO(song_bytes), dtype="float32", always_2d=True)
    pcm = np.ascontiguousarray(samples.T)
    assert pcm.nbytes > MAX_CHUNK_BYTES  # travels as several chunks
    options = _options(steps=2, count=2, pcm_sample_rate=rate, title="Song", artist="Band")
    from_pcm = _charts(_call(stub, _pcm(options, pcm)))
    from_bytes = _charts(_call(stub, _encoded(options, song_bytes)))
    assert [c.seed for c in from_pcm] == [1234, 1235]
    assert from_pcm == from_bytes
    assert from_pcm[1].file_name == "Band - Song (MuG Diffusion v0) [AI v2].osu"


def test_defaults_apply_when_fields_are_absent(stub, song_bytes: bytes) -> None:
    options = chart_pb2.ChartOptions(
        steps=1, mini_jack_interval=Duration(nanos=90_000_000), snap_to_grid=True
    )
    explicit = _charts(_call(stub, _encoded(options, song_bytes)))
    implicit = _charts(_call(stub, _encoded(chart_pb2.ChartOptions(steps=1), song_bytes)))
    assert explicit == implicit and len(implicit) == 1
    assert "AudioFilename: audio.mp3" in implicit[0].osu and "Title: Untitled" in implicit[0].osu


def _bad(field: str, **changes):
    return field, changes


BAD_OPTIONS = [
    _bad("options.features.sr", features=chart_pb2.ChartFeatures(sr=9.0)),
    _bad("options.features.stream_ett", features=chart_pb2.ChartFeatures(stream_ett=4.0)),
    _bad("options.features.rank_status", features=chart_pb2.ChartFeatures(rank_status=7)),
    _bad("options.steps", steps=1001),
    _bad("options.steps", steps=501),
    _bad("options.count", count=9),
    _bad("options.guidance", guidance=float("nan")),
    _bad("options.mini_jack_interval", mini_jack_interval=Duration(seconds=2)),
]


@pytest.mark.parametrize(("field", "changes"), BAD_OPTIONS, ids=[f for f, _ in BAD_OPTIONS])
def test_bad_options_name_the_field(stub, song_bytes: bytes, field: str, changes: dict) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _call(stub, _encoded(_options(**changes), song_bytes))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(caught.value)] == [field]


def _options_request() -> chart_pb2.GenerateChartsRequest:
    return chart_pb2.GenerateChartsRequest(options=_options())


def _bad_streams() -> dict[str, tuple[str, list]]:
    """Streams that must fail, by name: (the field named, the requests)."""
    rate = 8000
    long_pcm = np.zeros(rate * int(MAX_SECONDS + 1), np.float32)
    pcm_options = _options(pcm_sample_rate=rate)
    corrupt = tensor_pb2.TensorChunk(
        header=tensor_pb2.TensorHeader(dtype=tensor_pb2.DATA_TYPE_FLOAT32, shape=[2], total_bytes=8, crc32=1),
        index=0,
        data=b"\x00" * 8,
    )
    return {
        "empty_audio": ("encoded_audio", [_options_request()]),
        "unreadable_audio": ("encoded_audio", _encoded(_options(), b"RIFF\x00\x00 this is not audio")),
        "too_long_audio": ("encoded_audio", _encoded(_options(), _wav(MAX_SECONDS + 1))),
        "too_long_pcm": ("pcm", _pcm(pcm_options, long_pcm)),
        "pcm_without_rate": ("options.pcm_sample_rate", _pcm(_options(), np.zeros(100, np.float32))),
        "no_options": ("options", []),
        "song_before_options": ("options", [chart_pb2.GenerateChartsRequest(encoded_audio=b"x")]),
        "options_twice": ("options", [_options_request(), _options_request()]),
        "both_song_forms": (
            "encoded_audio",
            [
                *_pcm(pcm_options, np.zeros(10, np.float32)),
                chart_pb2.GenerateChartsRequest(encoded_audio=b"x"),
            ],
        ),
        "pcm_checksum": ("pcm", [_options_request(), chart_pb2.GenerateChartsRequest(pcm=corrupt)]),
    }


BAD_STREAMS = _bad_streams()


@pytest.mark.parametrize("name", BAD_STREAMS)
def test_bad_songs_and_streams_are_invalid_argument(stub, name: str) -> None:
    field, requests = BAD_STREAMS[name]
    with pytest.raises(grpc.RpcError) as caught:
        _call(stub, requests)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(caught.value)] == [field]


def test_oversized_songs(stub) -> None:
    huge = tensor_pb2.TensorChunk(
        header=tensor_pb2.TensorHeader(
            dtype=tensor_pb2.DATA_TYPE_FLOAT32, shape=[2 * MIB], total_bytes=8 * MIB
        ),
        index=0,
    )
    with pytest.raises(grpc.RpcError) as caught:
        _call(stub, [_options_request(), chart_pb2.GenerateChartsRequest(pcm=huge)])
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(grpc.RpcError) as caught:
        _call(stub, _encoded(_options(), b"\x00" * (4 * MIB + 1)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(caught.value)] == ["encoded_audio"]


def test_deadline_stops_sampling(stub, song_bytes: bytes) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.GenerateCharts(iter(_encoded(_options(steps=500, count=8), song_bytes)), timeout=2.0))
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_no_model_is_failed_precondition(tmp_path: Path, song_bytes: bytes) -> None:
    config = ChartConfig(port=0, drain_delay_s=0, model_dir=str(tmp_path))
    with (
        running_stage(build_spec(config), config) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        _call(chart_pb2_grpc.ChartServiceStub(channel), _encoded(_options(), song_bytes))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "model.ckpt" in caught.value.details()
