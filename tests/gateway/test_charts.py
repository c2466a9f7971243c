"""Songs with charts: the gateway sends the finished song to a real chart stage process and packs its
charts in an `.osz` equal to what the chart engine makes in process from the same file; bad chart
requests with their statuses; `songsmith generate --chart` in process and through the gateway."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import grpc
import pytest
import torch
from grpc_health.v1 import health_pb2

from gateway.cli import main
from gateway.client import SongClient
from gateway.launcher import plan
from gateway.model_store import CHART_DEMO_FOLDER, write_chart_demo, write_demo
from gateway.models import discover, find_chart_model
from gateway.server import GatewayConfig, build_spec
from services.chart.engine import Chart, ChartRequest, ChartSettings, SongAudio
from services.chart.families import CHART_FAMILIES
from services.runtime.errors import FailedPreconditionError, InvalidArgumentError
from services.runtime.interceptor import field_violations
from services.runtime.model_info import sha256_file
from songsmith.v1 import chart_pb2, song_pb2
from tests.gateway.songs import LYRICS, assemble, request
from tests.helpers import free_port, health_status, running_stage, wait_for_health

ROOT = Path(__file__).resolve().parents[2]
# The chart stage process takes at most this many charts per request (the gateway allows 8).
STAGE_MAX_COUNT = 2
PROMPT = chart_pb2.ChartFeatures(sr=4.2, rank_status=chart_pb2.RANK_STATUS_RANKED, ln_ratio=0.3, hb=True)
# The same prompt as the engine reads it, in the proto's field order (the `.osu` header lists it so).
PROMPT_VALUES = {"sr": 4.2, "rank_status": "ranked", "ln_ratio": 0.3, "hb": True}


def song_with_charts(job_id: str, **fields: object) -> song_pb2.SongRequest:
    """A 4 s WAV song asking for two charts of 10 steps, titled."""
    message = request(job_id)
    charts = {"features": PROMPT, "count": 2, "steps": 10, "title": "Test Song", "artist": "Tester"}
    charts.update(fields)
    message.charts.CopyFrom(song_pb2.ChartRequest(**charts))
    return message


@pytest.fixture(scope="module")
def chart_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo models with the demo chart model beside them."""
    root = tmp_path_factory.mktemp("chart-models")
    write_demo(root)
    write_chart_demo(root)
    return root


@pytest.fixture(scope="module")
def chart_stage(chart_models: Path, tmp_path_factory: pytest.TempPathFactory):
    """`songsmith serve chart` as its own process on the demo chart model (one thread), healthy."""
    port = free_port()
    log = (tmp_path_factory.mktemp("chart-stage") / "chart.log").open("wb")
    command = [sys.executable, "-m", "gateway.cli", "serve", "chart", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--metrics-port", "0", "--threads", "1"]
    command += ["--model-dir", str(chart_models / CHART_DEMO_FOLDER), "--max-count", str(STAGE_MAX_COUNT)]
    environment = {**os.environ, "SONGSMITH_DRAIN_DELAY_S": "0", "OMP_WAIT_POLICY": "PASSIVE"}
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=environment)
    address = f"127.0.0.1:{port}"
    try:
        with grpc.insecure_channel(address) as channel:
            wait_for_health(channel, health_pb2.HealthCheckResponse.SERVING, timeout=300)
        yield address
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()


@pytest.fixture(scope="module")
def gateway(chart_models: Path, chart_stage: str, tmp_path_factory: pytest.TempPathFactory):
    """A gateway with the song stages in process and the chart stage process as its chart target."""
    var = tmp_path_factory.mktemp("gateway")
    config = GatewayConfig(
        port=0,
        drain_delay_s=0,
        model_root=str(chart_models),
        chart_target=chart_stage,
        jobs_db=str(var / "jobs.sqlite3"),
        results_dir=str(var / "results"),
    )
    with running_stage(build_spec(config), config) as server:
        yield f"127.0.0.1:{server.port}"


@pytest.fixture
def client(gateway: str):
    """A SongService client of the gateway."""
    song_client = SongClient(gateway)
    yield song_client
    song_client.close()


def _in_process_charts(model_dir: Path, audio: bytes) -> list[Chart]:
    """The charts the chart engine makes in this process (one thread, as the stage) from `audio`."""
    engine = CHART_FAMILIES.load(model_dir, ChartSettings())
    chart_request = ChartRequest(
        audio=SongAudio(encoded=audio),
        features=PROMPT_VALUES,
        seed=11,
        steps=10,
        guidance=5.0,
        count=2,
        title="Test Song",
        artist="Tester",
        audio_filename="audio.wav",
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [event for event in engine.generate(chart_request) if isinstance(event, Chart)]
    finally:
        torch.set_num_threads(threads)


def test_the_osz_holds_the_song_and_the_charts_the_engine_makes_in_process(
    client: SongClient, chart_models: Path
) -> None:
    audio, events = assemble(client.generate(song_with_charts("charts-1"), timeout=600))
    kinds = [event.WhichOneof("event") for event in events]
    first_osz = kinds.index("osz")
    assert kinds[-1] == "done" and "audio" not in kinds[first_osz:]
    assert set(kinds[first_osz:-1]) == {"osz"}
    steps = [e.progress for e in events if e.HasField("progress") and e.progress.stage == "chart"]
    assert [(p.step, p.total_steps) for p in steps] == [(i, 10) for i in range(1, 11)]
    pieces = [event.osz for event in events if event.HasField("osz")]
    assert [piece.offset for piece in pieces] == [
        sum(len(p.data) for p in pieces[:i]) for i in range(len(pieces))
    ]
    osz = b"".join(piece.data for piece in pieces)

    summary = events[-1].done
    model_dir = chart_models / CHART_DEMO_FOLDER
    assert summary.charts.osz_size_bytes == len(osz)
    assert summary.charts.osz_name == "Tester - Test Song.osz"
    assert summary.charts.model == "mug-demo"
    assert summary.charts.model_revision == sha256_file(model_dir / "model.ckpt")
    assert summary.stage_durations["chart"].ToNanoseconds() > 0

    expected = _in_process_charts(model_dir, audio)
    with zipfile.ZipFile(io.BytesIO(osz)) as archive:
        assert archive.namelist() == ["audio.wav", *(chart.file_name for chart in expected)]
        assert archive.read("audio.wav") == audio
        for chart in expected:
            assert archive.read(chart.file_name).decode("utf-8") == chart.osu
    assert expected[0].file_name == "Tester - Test Song (MuG Diffusion v0-demo) [AI v1].osu"
    assert "AudioFilename: audio.wav" in expected[0].osu
    assert [(c.file_name, c.version, c.seed, c.hit_objects) for c in summary.charts.charts] == [
        (c.file_name, c.version, c.seed, len(c.hit_objects)) for c in expected
    ]
    assert [c.seed for c in expected] == [11, 12]

    replayed_audio, replayed = assemble(client.watch("charts-1", timeout=60))
    assert replayed_audio == audio
    assert b"".join(e.osz.data for e in replayed if e.HasField("osz")) == osz
    assert replayed[-1].done == summary


def test_list_models_shows_the_chart_stage(client: SongClient, chart_stage: str) -> None:
    reply = client.stub.ListModels(song_pb2.ListModelsRequest(), timeout=30)
    chart = next(stage for stage in reply.models[0].stages if stage.stage == "chart")
    assert (chart.target, chart.model.family, chart.model.name) == (chart_stage, "mug", "mug-demo")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"count": 9}, "charts.count"),
        ({"features": chart_pb2.ChartFeatures(sr=9.0)}, "charts.features.sr"),
        ({"features": chart_pb2.ChartFeatures(stream_ett=40.0)}, "charts.features.stream_ett"),
        ({"steps": 3}, "charts.steps"),
        ({"steps": 1001}, "charts.steps"),
        ({"guidance": 101.0}, "charts.guidance"),
        ({"title": "x" * 201}, "charts.title"),
        ({"title": "AC/DC"}, "charts.title"),
        ({"artist": "who?"}, "charts.artist"),
    ],
)
def test_bad_charts_are_refused_at_submission(client: SongClient, fields: dict, field: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.submit(song_with_charts("", **fields))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in [violation.field for violation in field_violations(caught.value)]


def test_a_chart_stage_refusal_fails_the_job_naming_the_request_field(client: SongClient) -> None:
    """Three charts pass the gateway's check (up to 8) but not this stage's limit (2). The status's
    message names the field whichever way the watch got the outcome (followed live, the violation is
    also a BadRequest detail; relayed from the job store, the stored text is all there is)."""
    with pytest.raises(grpc.RpcError) as caught:
        list(
            client.generate(
                song_with_charts("charts-over-stage-limit", count=STAGE_MAX_COUNT + 1), timeout=600
            )
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"charts.count: must be 1..{STAGE_MAX_COUNT}, got 3" in caught.value.details()
    job = client.stub.GetJob(song_pb2.GetJobRequest(job_id="charts-over-stage-limit"), timeout=30).job
    assert job.state == song_pb2.JOB_STATE_FAILED
    assert job.error == f"INVALID_ARGUMENT: charts.count: must be 1..{STAGE_MAX_COUNT}, got 3"


def test_charts_without_a_chart_stage_are_failed_precondition(make_manager) -> None:
    manager = make_manager(start=False)
    with pytest.raises(FailedPreconditionError, match="no chart stage"):
        manager.submit(song_with_charts("no-chart-stage"))
    bad = song_with_charts("no-chart-stage")
    bad.steps = 1
    with pytest.raises(InvalidArgumentError) as caught:
        manager.submit(bad)
    assert [violation.field for violation in caught.value.violations] == ["steps"]


def test_up_plans_the_chart_stage_when_a_chart_model_is_there(chart_models: Path) -> None:
    stack = plan(discover(chart_models), 5000, 9400, find_chart_model(chart_models))
    names = [service.name for service in stack.services]
    assert names == ["gateway", "tokenizer", "style", "diffusion", "vocoder", "chart"]
    chart = stack.services[-1]
    assert (chart.port, chart.metrics_port, chart.model_dir) == (5005, 9405, chart_models / CHART_DEMO_FOLDER)
    assert stack.chart_target == "127.0.0.1:5005"
    assert plan(discover(chart_models), 5000, 9400).chart_target == ""


def _generate(tmp_path: Path, output: Path, *extra: str) -> int:
    lyrics = tmp_path / "lyrics.txt"
    lyrics.write_text(LYRICS, encoding="utf-8")
    command = ["generate", "--lyrics", str(lyrics), "--style", "folk", "-o", str(output)]
    return main([*command, "--seed", "3", "--steps", "4", "--max-secs", "4", "-q", *extra])


def _osz_entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


CHART_FLAGS = ("--chart", "--feature", "sr=4", "--feature", "rank_status=loved", "--chart-count", "2")


def test_generate_with_charts_in_process_writes_the_osz(chart_models: Path, tmp_path: Path, capsys) -> None:
    output = tmp_path / "out" / "song.wav"
    code = _generate(tmp_path, output, "--model-root", str(chart_models), *CHART_FLAGS, "--chart-steps", "4")
    assert code == 0, capsys.readouterr().err
    entries = _osz_entries(tmp_path / "out" / "song.osz")
    assert next(iter(entries)) == "audio.wav" and entries["audio.wav"] == output.read_bytes()
    charts = [name for name in entries if name.endswith(".osu")]
    assert charts == [f"Unknown Artist - song (MuG Diffusion v0-demo) [AI v{i}].osu" for i in (1, 2)]
    assert "rank_status=loved" in entries[charts[0]].decode()
    assert f"{tmp_path / 'out' / 'song.osz'}: 2 osu!mania charts" in capsys.readouterr().out


def test_generate_with_charts_through_the_gateway_writes_the_osz(
    gateway: str, tmp_path: Path, capsys
) -> None:
    output = tmp_path / "song.mp3"
    code = _generate(tmp_path, output, "--server", gateway, *CHART_FLAGS, "--chart-steps", "4")
    assert code == 0, capsys.readouterr().err
    entries = _osz_entries(tmp_path / "song.osz")
    assert list(entries) == [
        "audio.mp3",
        "Unknown Artist - song (MuG Diffusion v0-demo) [AI v1].osu",
        "Unknown Artist - song (MuG Diffusion v0-demo) [AI v2].osu",
    ]
    assert entries["audio.mp3"] == output.read_bytes()


def test_jobs_watch_writes_the_osz_beside_the_song(client: SongClient, gateway: str, tmp_path: Path) -> None:
    job = client.submit(song_with_charts("charts-watched", count=1, steps=4))
    output = tmp_path / "watched.wav"
    assert main(["jobs", "watch", job.job_id, "--server", gateway, "-o", str(output), "-q"]) == 0
    entries = _osz_entries(tmp_path / "watched.osz")
    assert list(entries) == ["audio.wav", "Tester - Test Song (MuG Diffusion v0-demo) [AI v1].osu"]
    assert entries["audio.wav"] == output.read_bytes()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--feature", "sr=4"), "need --chart"),
        (("--chart", "--feature", "stars=4"), "unknown chart feature 'stars'"),
        (("--chart", "--feature", "hb=yes"), "use true or false"),
        (("--chart", "--feature", "rank_status=pending"), "use one of ranked, loved, graveyard"),
        (("--chart", "--feature", "sr"), "NAME=VALUE"),
    ],
)
def test_generate_chart_usage_errors(tmp_path: Path, capsys, flags: tuple[str, ...], message: str) -> None:
    assert _generate(tmp_path, tmp_path / "song.wav", "--model-root", str(tmp_path), *flags) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("songsmith: error:") and message in error and "\n" not in error


def test_generate_with_charts_without_a_chart_model_fails_in_one_line(
    demo_models: Path, tmp_path: Path, capsys
) -> None:
    assert _generate(tmp_path, tmp_path / "song.wav", "--model-root", str(demo_models), "--chart") == 1
    error = capsys.readouterr().err.strip()
    assert "no chart stage" in error and "\n" not in error


def test_models_list_names_the_chart_model(chart_models: Path, capsys) -> None:
    assert main(["models", "list", "--model-root", str(chart_models)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].split() == ["(charts)", "mug", "chart", str(chart_models / CHART_DEMO_FOLDER)]


def test_a_stopped_chart_stage_is_unavailable_at_submission(demo_models: Path, tmp_path: Path) -> None:
    config = GatewayConfig(
        port=0,
        drain_delay_s=0,
        model_root=str(demo_models),
        chart_target=f"127.0.0.1:{free_port()}",
        jobs_db=str(tmp_path / "jobs.sqlite3"),
        results_dir=str(tmp_path / "results"),
    )
    with running_stage(build_spec(config), config) as server:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            assert health_status(channel) == health_pb2.HealthCheckResponse.SERVING
        song_client = SongClient(f"127.0.0.1:{server.port}")
        try:
            with pytest.raises(grpc.RpcError) as caught:
                song_client.submit(song_with_charts("chart-stage-down"))
        finally:
            song_client.close()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
