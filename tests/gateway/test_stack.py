"""The whole system as real processes on 127.0.0.1: four stages and the gateway, over gRPC."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.cli import main
from gateway.client import SongClient
from gateway.launcher import STAGE_THREADING, LocalStack
from gateway.models import STAGES
from gateway.server import GatewayConfig, build_spec
from services.runtime.interceptor import field_violations
from songsmith.v1 import song_pb2
from tests.gateway.songs import assemble, healthy_stack, request
from tests.helpers import running_stage


@pytest.fixture(scope="module")
def stack(demo_models: Path, tmp_path_factory: pytest.TempPathFactory):
    """The local stack on the demo model, healthy."""
    with healthy_stack(demo_models, tmp_path_factory.mktemp("var")) as local:
        yield local


@pytest.fixture
def client(stack: LocalStack):
    """A SongService client for the stack's gateway."""
    song_client = SongClient(stack.services[0].address)
    yield song_client
    song_client.close()


def _metric(stack: LocalStack, stage: str, name: str) -> float:
    service = next(s for s in stack.services if s.name == stage)
    with urllib.request.urlopen(f"http://127.0.0.1:{service.metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


EQUAL_SONG = request("equal-1", seconds=6)
RESUMED_SONG = request("resume-1", seconds=20)


@pytest.fixture(scope="module")
def in_process_songs(demo_models: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The test songs made in-process by `songsmith batch`, in a process set up like the stage
    processes (the last bits of float sums depend on the threads sharing a product)."""
    folder = tmp_path_factory.mktemp("in-process")
    lines = [
        {
            "song_name": m.job_id,
            "style_prompt": m.style_prompt,
            "lyrics": m.lyrics,
            "seed": m.seed,
            "steps": m.steps,
            "max_secs": m.max_duration.ToNanoseconds() / 1e9,
        }
        for m in (EQUAL_SONG, RESUMED_SONG)
    ]
    (folder / "songs.jsonl").write_text("\n".join(json.dumps(line) for line in lines), encoding="utf-8")
    command = [
        sys.executable,
        "-m",
        "gateway.cli",
        "batch",
        str(folder / "songs.jsonl"),
        "-o",
        str(folder),
        "--format",
        "wav",
        "--local",
        "--model-root",
        str(demo_models),
        "-q",
    ]
    subprocess.run(command, check=True, env={**os.environ, **STAGE_THREADING}, timeout=600)
    return {m.job_id: (folder / f"{m.job_id}.wav").read_bytes() for m in (EQUAL_SONG, RESUMED_SONG)}


def test_grpc_song_equals_the_in_process_song(client: SongClient, in_process_songs: dict[str, bytes]) -> None:
    audio, events = assemble(client.generate(EQUAL_SONG, timeout=300))
    kinds = [event.WhichOneof("event") for event in events]
    assert kinds[0] == "accepted" and kinds[-1] == "done" and "progress" in kinds
    assert kinds.index("audio") < len(kinds) - 2, "audio arrived only at the end"
    assert audio == in_process_songs["equal-1"]


def test_bad_requests_never_reach_a_stage(stack: LocalStack, client: SongClient) -> None:
    client.stub.ListModels(song_pb2.ListModelsRequest(), timeout=30)  # the model's info, asked once
    before = {stage: _metric(stack, stage, "songsmith_requests_total") for stage in STAGES}
    bad = request("bad-1", lyrics="[verse]\nfine\n12345", steps=900)
    with pytest.raises(grpc.RpcError) as caught:
        list(client.generate(bad, timeout=30))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    described = {(v.field, v.description.split(":")[0]) for v in field_violations(caught.value)}
    assert {("lyrics", "line 3"), ("steps", "900 is outside 2..200")} <= described
    after = {stage: _metric(stack, stage, "songsmith_requests_total") for stage in STAGES}
    assert after == before


def test_cancel_stops_every_stage(stack: LocalStack, client: SongClient) -> None:
    call = client.generate(request("cancel-1", seconds=120), timeout=300)
    for event in call:
        if event.HasField("progress") and event.progress.stage == "diffusion":
            break
    client.stub.CancelJob(song_pb2.CancelJobRequest(job_id="cancel-1"), timeout=30)
    with pytest.raises(grpc.RpcError) as ended:
        list(call)
    assert ended.value.code() == grpc.StatusCode.CANCELLED
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        job = client.stub.GetJob(song_pb2.GetJobRequest(job_id="cancel-1"), timeout=10).job
        in_flight = {
            stage: _metric(stack, stage, "songsmith_requests_in_flight") for stage in (*STAGES, "gateway")
        }
        if job.state == song_pb2.JOB_STATE_CANCELLED and not any(in_flight.values()):
            break
        time.sleep(0.2)
    assert not any(in_flight.values()), in_flight
    assert job.state == song_pb2.JOB_STATE_CANCELLED, job


def test_killed_diffusion_is_resumed_and_the_song_is_identical(
    stack: LocalStack, client: SongClient, in_process_songs: dict[str, bytes]
) -> None:
    killed = threading.Event()

    def kill_after_first_block(events):
        for event in events:
            if event.HasField("progress") and event.progress.stage == "diffusion" and not killed.is_set():
                stack.processes["diffusion"].kill()
                stack.processes["diffusion"].wait()
                killed.set()
                stack.launch("diffusion")
            yield event

    audio, events = assemble(kill_after_first_block(client.generate(RESUMED_SONG, timeout=300)))
    assert killed.is_set()
    assert events[-1].HasField("done")
    assert audio == in_process_songs["resume-1"]
    assert not stack.wait_healthy(120)


def test_submitted_jobs_are_idempotent_and_watchable(client: SongClient) -> None:
    message = request("submit-1")
    first = client.submit(message)
    second = client.submit(message)
    assert first.job_id == second.job_id == "submit-1"
    with pytest.raises(grpc.RpcError) as caught:
        client.submit(request("submit-1", seed=99))
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    audio, events = assemble(client.watch("submit-1", timeout=300))
    assert events[-1].HasField("done") and len(audio) == events[-1].done.size_bytes
    listed = client.stub.ListJobs(song_pb2.ListJobsRequest(page_size=100), timeout=30).jobs
    assert [job.job_id for job in listed].count("submit-1") == 1
    with pytest.raises(grpc.RpcError) as missing:
        client.stub.GetJob(song_pb2.GetJobRequest(job_id="never-submitted"), timeout=30)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_gateway_requires_a_known_bearer_token(stack: LocalStack, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# team tokens\nsecret-1\n")
    targets = {s.name: f"dns:///{s.address}" for s in stack.services}
    config = GatewayConfig(
        port=0,
        drain_delay_s=0,
        tokenizer_target=targets["tokenizer"],
        style_target=targets["style"],
        diffusion_target=targets["diffusion"],
        vocoder_target=targets["vocoder"],
        auth_tokens_file=str(tokens),
        jobs_db=str(tmp_path / "jobs.sqlite3"),
        results_dir=str(tmp_path / "results"),
    )
    with running_stage(build_spec(config), config) as gateway:
        address = f"127.0.0.1:{gateway.port}"
        for token, code in (
            ("", grpc.StatusCode.UNAUTHENTICATED),
            ("wrong", grpc.StatusCode.PERMISSION_DENIED),
        ):
            anonymous = SongClient(address, token)
            with pytest.raises(grpc.RpcError) as caught:
                anonymous.stub.ListJobs(song_pb2.ListJobsRequest(), metadata=anonymous.metadata, timeout=10)
            assert caught.value.code() == code
            anonymous.close()
        trusted = SongClient(address, "secret-1")
        audio, events = assemble(trusted.generate(request("auth-1"), timeout=300))
        assert events[-1].HasField("done") and audio
        trusted.close()


def test_jobs_commands_against_the_gateway(
    stack: LocalStack, client: SongClient, tmp_path: Path, capsys
) -> None:
    address = stack.services[0].address
    client.submit(request("cli-1"))
    assert main(["jobs", "watch", "cli-1", "--server", address, "-o", str(tmp_path / "cli-1.wav"), "-q"]) == 0
    watched = (tmp_path / "cli-1.wav").read_bytes()
    replayed, _ = assemble(client.watch("cli-1", timeout=60))
    assert watched == replayed
    assert main(["jobs", "list", "--server", address]) == 0
    assert any(line.startswith("cli-1  succeeded") for line in capsys.readouterr().out.splitlines())
    assert main(["jobs", "get", "cli-1", "--server", address]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "JOB_STATE_SUCCEEDED"
    assert main(["jobs", "cancel", "cli-1", "--server", address]) == 0
    assert "succeeded" in capsys.readouterr().out
    assert main(["jobs", "get", "no-such-job", "--server", address]) == 1
    assert "no job no-such-job" in capsys.readouterr().err
