"""What a platform team sees of a song, scraped and received from the real stack (four stage processes
and the gateway on 127.0.0.1, exporting spans to an in-test OTLP receiver): every metric family from
start-up, what one song adds to them, and the song as one trace."""

from __future__ import annotations

import json
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.trace.v1 import trace_pb2
from prometheus_client.parser import text_string_to_metric_families

from gateway.client import SongClient
from gateway.launcher import LocalStack, Service
from songsmith.v1 import song_pb2
from tests.gateway.songs import assemble, healthy_stack, request
from tests.otlp import OtlpReceiver, ReceivedSpan, otlp_receiver

Samples = dict[tuple[str, frozenset], float]
STAGE_SERVICES = {
    "tokenizer": ["/songsmith.v1.LyricTokenizerService/Tokenize"],
    "style": ["/songsmith.v1.StyleEncoderService/EmbedText", "/songsmith.v1.StyleEncoderService/EmbedAudio"],
    "diffusion": ["/songsmith.v1.DiffusionService/GenerateLatents"],
    "vocoder": ["/songsmith.v1.VocoderService/Decode"],
}
MODEL_INFO = "/songsmith.v1.ModelInfoService/GetModelInfo"
GATEWAY_METHODS = [
    f"/songsmith.v1.SongService/{name}"
    for name in ("Generate", "SubmitJob", "GetJob", "WatchJob", "CancelJob", "ListJobs", "ListModels")
]
EVERY_STAGE = (
    "songsmith_requests_in_flight",
    "songsmith_queue_depth",
    "songsmith_queue_wait_seconds_count",
    "songsmith_received_bytes_total",
    "songsmith_sent_bytes_total",
    "songsmith_model_load_seconds",
)
# The generation and vocoder stages' own families (their warm-up may already count a batched step).
FRAME_STAGES = ("songsmith_frames_total", "songsmith_batch_size_count", "songsmith_batch_step_seconds_count")


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    """The OTLP receiver the stack exports its spans to."""
    with otlp_receiver() as (running, port), pytest.MonkeyPatch.context() as environment:
        environment.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
        environment.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
        environment.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
        yield running


@pytest.fixture(scope="module")
def stack(
    demo_models: Path, tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver
) -> Iterator[LocalStack]:
    """The local stack on the demo model, healthy, exporting spans to `receiver`."""
    with healthy_stack(demo_models, tmp_path_factory.mktemp("var")) as local:
        yield local


def scrape(service: Service) -> Samples:
    """Every `songsmith_` sample a service's metrics endpoint serves, by name and labels."""
    url = f"http://127.0.0.1:{service.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("songsmith_")
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; KeyError when the series does not exist."""
    return samples[(name, frozenset(labels.items()))]


def service(stack: LocalStack, name: str) -> Service:
    """The stack's service called `name`."""
    return next(s for s in stack.services if s.name == name)


@pytest.fixture(scope="module")
def at_startup(stack: LocalStack) -> dict[str, Samples]:
    """Every service's samples before any song."""
    return {s.name: scrape(s) for s in stack.services}


@pytest.fixture(scope="module")
def one_song(stack: LocalStack, at_startup: dict[str, Samples]) -> tuple[song_pb2.SongSummary, float]:
    """One song through the gateway, after the start-up scrape; its summary and the model's frame rate."""
    client = SongClient(stack.services[0].address)
    try:
        _, events = assemble(client.generate(request("observed-1", seconds=4), timeout=300))
        models = client.stub.ListModels(song_pb2.ListModelsRequest(), timeout=30).models
    finally:
        client.close()
    assert events[-1].HasField("done")
    return events[-1].done, models[0].model.frame_rate


def test_every_stage_family_exists_at_zero_from_start_up(at_startup: dict[str, Samples]) -> None:
    for stage, methods in STAGE_SERVICES.items():
        samples = at_startup[stage]
        for method in [*methods, MODEL_INFO]:
            assert value(samples, "songsmith_requests_total", stage=stage, method=method, code="OK") == 0
            assert value(samples, "songsmith_request_duration_seconds_count", stage=stage, method=method) == 0
        for name in EVERY_STAGE:
            if name == "songsmith_model_load_seconds":
                assert value(samples, name, stage=stage) > 0, f"{stage} loaded its model: the time is known"
            else:
                assert value(samples, name, stage=stage) == 0, (stage, name)
        frames = stage in ("diffusion", "vocoder")
        for name in FRAME_STAGES:
            assert ((name, frozenset({"stage": stage}.items())) in samples) is frames, (stage, name)
        if frames:
            assert value(samples, "songsmith_frames_total", stage=stage) == 0
        assert not [key for key in samples if key[0].startswith("songsmith_gpu_")], "no GPU here"


def test_the_gateway_families_exist_at_zero_from_start_up(at_startup: dict[str, Samples]) -> None:
    samples = at_startup["gateway"]
    for method in GATEWAY_METHODS:
        assert value(samples, "songsmith_requests_total", stage="gateway", method=method, code="OK") == 0
    assert value(samples, "songsmith_queue_depth", stage="gateway") == 0
    for state in ("queued", "running"):
        assert value(samples, "songsmith_jobs", state=state) == 0
    for state in ("succeeded", "failed", "cancelled"):
        assert value(samples, "songsmith_jobs_finished_total", state=state) == 0
    assert value(samples, "songsmith_time_to_first_audio_seconds_count", model="diffrhythm2") == 0
    assert value(samples, "songsmith_real_time_factor_count", model="diffrhythm2") == 0


def test_a_song_shows_in_every_family(
    stack: LocalStack, one_song: tuple[song_pb2.SongSummary, float]
) -> None:
    summary, frame_rate = one_song
    after = {s.name: scrape(s) for s in stack.services}
    for stage, methods in STAGE_SERVICES.items():
        samples = after[stage]
        called = sum(
            value(samples, "songsmith_requests_total", stage=stage, method=m, code="OK") for m in methods
        )
        assert called >= 1, stage
        assert value(samples, "songsmith_queue_wait_seconds_count", stage=stage) >= 1
        assert value(samples, "songsmith_received_bytes_total", stage=stage) > 0
    frames = round(summary.duration.ToNanoseconds() / 1e9 * frame_rate)
    assert value(after["diffusion"], "songsmith_frames_total", stage="diffusion") == frames
    assert value(after["vocoder"], "songsmith_frames_total", stage="vocoder") == frames
    gateway = after["gateway"]
    assert value(gateway, "songsmith_time_to_first_audio_seconds_count", model="diffrhythm2") == 1
    first_audio = value(gateway, "songsmith_time_to_first_audio_seconds_sum", model="diffrhythm2")
    took = summary.stage_durations["total"].ToNanoseconds() / 1e9
    assert 0 < first_audio <= took + 1.0
    assert value(gateway, "songsmith_real_time_factor_count", model="diffrhythm2") == 1
    speed = summary.duration.ToNanoseconds() / summary.stage_durations["total"].ToNanoseconds()
    assert value(gateway, "songsmith_real_time_factor_sum", model="diffrhythm2") == pytest.approx(speed)
    assert value(gateway, "songsmith_jobs_finished_total", state="succeeded") == 1
    assert value(gateway, "songsmith_jobs", state="running") == 0
    assert value(gateway, "songsmith_jobs", state="queued") == 0


# The stage calls of one song, by the service that serves them.
SONG_CALLS = {
    "songsmith.v1.LyricTokenizerService/Tokenize": "songsmith-tokenizer",
    "songsmith.v1.StyleEncoderService/EmbedText": "songsmith-style",
    "songsmith.v1.DiffusionService/GenerateLatents": "songsmith-diffusion",
    "songsmith.v1.VocoderService/Decode": "songsmith-vocoder",
}
GENERATE = "songsmith.v1.SongService/Generate"
CLIENT, SERVER = trace_pb2.Span.SPAN_KIND_CLIENT, trace_pb2.Span.SPAN_KIND_SERVER


def _song_is_in(spans: list[ReceivedSpan]) -> bool:
    """Every stage's server span of the song has arrived (they end last)."""
    served = {(s.service, s.span.name) for s in spans if s.span.kind == SERVER}
    return {(service, name) for name, service in SONG_CALLS.items()} <= served and any(
        s.span.name == GENERATE for s in spans
    )


def test_one_song_is_one_trace(
    stack: LocalStack, receiver: OtlpReceiver, one_song: tuple[song_pb2.SongSummary, float]
) -> None:
    """Every span of the song, through the gateway and four stage processes, is in one trace: the
    Generate call, its song span, the stage calls under it and each stage's server span under its
    call. (The test's own ListModels call is its own trace, left aside.)"""
    summary, _ = one_song
    spans = receiver.wait_for(_song_is_in)
    traces: dict[bytes, list[ReceivedSpan]] = {}
    for received in spans:
        traces.setdefault(received.span.trace_id, []).append(received)
    song_traces = {
        trace_id: members
        for trace_id, members in traces.items()
        if not any(m.span.name == "songsmith.v1.SongService/ListModels" for m in members)
    }
    assert len(song_traces) == 1, {t.hex(): sorted(m.span.name for m in ms) for t, ms in song_traces.items()}
    ((trace_id, members),) = song_traces.items()
    by_id = {m.span.span_id: m for m in members}

    def parent(member: ReceivedSpan) -> ReceivedSpan:
        return by_id[member.span.parent_span_id]

    (generate,) = [m for m in members if m.span.name == GENERATE]
    assert (generate.service, generate.span.kind) == ("songsmith-gateway", SERVER)
    assert generate.span.parent_span_id not in by_id, "Generate is the song's root on the server side"
    (song,) = [m for m in members if m.span.name == "song"]
    assert song.service == "songsmith-gateway" and parent(song) is generate
    assert song.attributes == {
        "songsmith.job.id": "observed-1",
        "songsmith.model": "diffrhythm2",
        "songsmith.seed": 11,
        "songsmith.seconds": 4.0,
        "songsmith.resumed": False,
    }
    for name, service in SONG_CALLS.items():
        (call,) = [m for m in members if m.span.name == name and m.span.kind == CLIENT]
        assert call.service == "songsmith-gateway" and parent(call) is song, name
        assert call.attributes["rpc.system.name"] == "grpc" and call.attributes["rpc.method"] == name
        assert call.attributes["rpc.response.status_code"] == "OK"
        (served,) = [m for m in members if m.span.name == name and m.span.kind == SERVER]
        assert served.service == service and parent(served) is call, name
    for info in (m for m in members if m.span.name == "songsmith.v1.ModelInfoService/GetModelInfo"):
        assert info.span.parent_span_id in by_id
    assert summary.model == "diffrhythm2"

    log = stack.var_dir / "logs" / "gateway.log"
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    song_lines = [line for line in lines if line["job_id"] == "observed-1"]
    assert song_lines, "the gateway logged nothing about the song"
    assert {line["trace_id"] for line in song_lines} == {trace_id.hex()}


def test_a_resumed_song_is_a_new_trace_linked_to_the_original(
    stack: LocalStack, receiver: OtlpReceiver
) -> None:
    """A job interrupted by a gateway restart resumes on the next gateway in a new trace, whose
    `song` span links to the trace the job was submitted in."""
    client = SongClient(stack.services[0].address)
    try:
        client.submit(request("resumed-1", seconds=20))
        for event in client.watch("resumed-1", timeout=120):
            if event.HasField("progress") and event.progress.blocks_done:
                break
    finally:
        client.close()
    gateway = stack.processes["gateway"]
    gateway.send_signal(signal.SIGTERM)
    assert gateway.wait(timeout=60) == 0
    stack.launch("gateway")
    assert not stack.wait_healthy(120)
    client = SongClient(stack.services[0].address)
    try:
        _, events = assemble(client.watch("resumed-1", timeout=300))
    finally:
        client.close()
    assert events[-1].HasField("done")

    def both_runs(spans: list[ReceivedSpan]) -> bool:
        songs = [
            s for s in spans if s.span.name == "song" and s.attributes["songsmith.job.id"] == "resumed-1"
        ]
        return len(songs) == 2

    spans = receiver.wait_for(both_runs)
    first, resumed = sorted(
        (s for s in spans if s.span.name == "song" and s.attributes["songsmith.job.id"] == "resumed-1"),
        key=lambda s: s.span.start_time_unix_nano,
    )
    (submit,) = [s for s in spans if s.span.name == "songsmith.v1.SongService/SubmitJob"]
    assert first.attributes["songsmith.resumed"] is False and first.span.parent_span_id == submit.span.span_id
    assert first.span.trace_id == submit.span.trace_id
    assert resumed.attributes["songsmith.resumed"] is True
    assert resumed.span.trace_id != submit.span.trace_id and not resumed.span.parent_span_id
    (link,) = resumed.span.links
    assert (link.trace_id, link.span_id) == (submit.span.trace_id, submit.span.span_id)
    resumed_calls = {
        s.span.name
        for s in spans
        if s.span.trace_id == resumed.span.trace_id and s.span.parent_span_id == resumed.span.span_id
    }
    assert {
        "songsmith.v1.DiffusionService/GenerateLatents",
        "songsmith.v1.VocoderService/Decode",
    } <= resumed_calls
