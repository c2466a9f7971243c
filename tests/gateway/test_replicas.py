"""Several gateway processes on one PostgreSQL database serve one song queue: one runner per job,
every call on every gateway, takeover after a SIGKILL, a database restart, owners. Real processes
on 127.0.0.1 (in-process stages on the demo model) and a real PostgreSQL server."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from gateway.client import SongClient
from songsmith.v1 import song_pb2
from tests.gateway.replicas import Gateways
from tests.gateway.songs import assemble, request
from tests.postgres import PostgresServer

SUCCEEDED, CANCELLED = song_pb2.JOB_STATE_SUCCEEDED, song_pb2.JOB_STATE_CANCELLED


@pytest.fixture(scope="module")
def gateways(postgres: PostgresServer, demo_models: Path, tmp_path_factory: pytest.TempPathFactory):
    """Three gateways on one fresh database."""
    replicas = Gateways(3, postgres.create_database(), demo_models, tmp_path_factory.mktemp("replicas"))
    try:
        replicas.start()
        yield replicas
    finally:
        replicas.stop()


def _watch(client: SongClient, job_id: str) -> tuple[bytes, list[song_pb2.SongEvent]]:
    return assemble(client.watch(job_id, timeout=300))


def _song(gateways: Gateways, job_id: str, seconds: float, index: int = 0) -> bytes:
    """A song made start to end by the gateways (the reference for interrupted ones)."""
    client = gateways.client(index)
    audio, events = assemble(client.generate(request(job_id, seconds=seconds), timeout=300))
    assert events[-1].HasField("done")
    return audio


def _wait_for_blocks(gateways: Gateways, job_id: str, blocks: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while gateways.row(job_id)["blocks_done"] < blocks:
        assert time.monotonic() < deadline, f"{job_id} never reached {blocks} blocks"
        time.sleep(0.05)


def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code()


def test_one_id_sent_to_every_gateway_at_once_is_one_job(gateways: Gateways) -> None:
    message = request("same-id", seconds=6)
    clients = [gateways.client(index) for index in range(3)]
    start = threading.Barrier(3)

    def generate(client: SongClient) -> tuple[bytes, list[song_pb2.SongEvent]]:
        start.wait()
        return assemble(client.generate(message, timeout=300))

    with ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(generate, clients))
    audio, events = outcomes[0]
    assert events[0].HasField("accepted") and events[-1].HasField("done") and audio
    assert all(other == (audio, events) for other in outcomes[1:]), "every gateway streams the same events"
    row = gateways.row("same-id")
    assert (row["state"], row["attempt"]) == (SUCCEEDED, 1), "claimed and run once"
    for client in clients:
        listed = client.stub.ListJobs(song_pb2.ListJobsRequest(), metadata=client.metadata, timeout=10).jobs
        assert [job.job_id for job in listed].count("same-id") == 1
        assert _watch(client, "same-id")[0] == audio


def test_a_watch_through_another_gateway_is_the_runner_s_watch(gateways: Gateways) -> None:
    submitter = gateways.client(0)
    submitter.submit(request("relayed", seconds=10), timeout=10)
    runner = gateways.runner("relayed")
    other = (runner + 1) % 3
    with ThreadPoolExecutor(2) as pool:
        on_runner, elsewhere = pool.map(
            lambda index: _watch(gateways.client(index), "relayed"), (runner, other)
        )
    assert on_runner[1][-1].HasField("done")
    assert elsewhere == on_runner
    progress = [event.progress.blocks_done for event in elsewhere[1] if event.progress.stage == "diffusion"]
    assert progress == list(range(1, 6))


def test_cancel_through_another_gateway_stops_the_song_within_a_second(gateways: Gateways) -> None:
    submitter = gateways.client(0)
    submitter.submit(request("stop-me", seconds=120), timeout=10)
    runner = gateways.runner("stop-me")
    other = gateways.client((runner + 2) % 3)
    watch = other.watch("stop-me", timeout=120)
    for event in watch:
        if event.progress.stage == "diffusion":
            break
    started = time.monotonic()
    job = other.stub.CancelJob(
        song_pb2.CancelJobRequest(job_id="stop-me"), metadata=other.metadata, timeout=30
    ).job
    elapsed = time.monotonic() - started
    assert job.state == CANCELLED and not job.HasField("result"), job
    assert elapsed < 1.0, f"the running gateway took {elapsed:.2f} s to stop the song"
    assert _code(lambda: list(watch)) == grpc.StatusCode.CANCELLED
    runner_client = gateways.client(runner)
    assert _code(lambda: _watch(runner_client, "stop-me")) == grpc.StatusCode.CANCELLED


def _refusals(client: SongClient, job_id: str) -> dict[str, grpc.StatusCode]:
    """The status of every call on `job_id` that must not reach another identity's job."""
    metadata = client.metadata
    calls = {
        "GetJob": lambda: client.stub.GetJob(song_pb2.GetJobRequest(job_id=job_id), metadata=metadata),
        "WatchJob": lambda: _watch(client, job_id),
        "CancelJob": lambda: client.stub.CancelJob(
            song_pb2.CancelJobRequest(job_id=job_id), metadata=metadata
        ),
        "DeleteJob": lambda: client.stub.DeleteJob(
            song_pb2.DeleteJobRequest(job_id=job_id), metadata=metadata
        ),
        "SubmitJob": lambda: client.stub.SubmitJob(
            song_pb2.SubmitJobRequest(song=request(job_id, seconds=20)), metadata=metadata
        ),
    }
    return {name: _code(call) for name, call in calls.items()}


def test_jobs_belong_to_their_identity_on_every_gateway(gateways: Gateways) -> None:
    alice = gateways.client(0, "alice")
    alice.submit(request("alices", seconds=20), timeout=10)
    not_found = grpc.StatusCode.NOT_FOUND
    for index in range(3):
        bob = gateways.client(index, "bob")
        assert _refusals(bob, "alices") == {
            "GetJob": not_found,
            "WatchJob": not_found,
            "CancelJob": not_found,
            "DeleteJob": not_found,
            "SubmitJob": grpc.StatusCode.ALREADY_EXISTS,
        }
        listed = bob.stub.ListJobs(song_pb2.ListJobsRequest(), metadata=bob.metadata, timeout=10).jobs
        assert "alices" not in [job.job_id for job in listed]
    ops = gateways.client(2, "ops")
    assert (
        ops.stub.GetJob(song_pb2.GetJobRequest(job_id="alices"), metadata=ops.metadata).job.job_id == "alices"
    )
    listed = ops.stub.ListJobs(song_pb2.ListJobsRequest(), metadata=ops.metadata, timeout=10).jobs
    assert "alices" in [job.job_id for job in listed]
    elsewhere = gateways.client(1, "alice")
    delete = song_pb2.DeleteJobRequest(job_id="alices")
    early = _code(lambda: elsewhere.stub.DeleteJob(delete, metadata=elsewhere.metadata, timeout=10))
    assert early == grpc.StatusCode.FAILED_PRECONDITION
    audio, _ = _watch(elsewhere, "alices")
    result = gateways.folder / "results" / "alices.wav"
    assert result.read_bytes() == audio
    elsewhere.stub.DeleteJob(delete, metadata=elsewhere.metadata, timeout=10)
    assert not result.exists()
    for index in range(3):
        admin = gateways.client(index, "ops")
        get = song_pb2.GetJobRequest(job_id="alices")
        assert (
            _code(lambda admin=admin, get=get: admin.stub.GetJob(get, metadata=admin.metadata)) == not_found
        )


def test_a_killed_gateway_s_song_finishes_identical_on_another(gateways: Gateways) -> None:
    expected = _song(gateways, "uninterrupted", seconds=60)
    submitter = gateways.client(0)
    submitter.submit(request("killed", seconds=60), timeout=10)
    runner = gateways.runner("killed")
    survivor = (runner + 1) % 3
    with ThreadPoolExecutor(1) as pool:
        watched = pool.submit(_watch, gateways.client(survivor), "killed")
        _wait_for_blocks(gateways, "killed", 3)
        gateways.kill(runner)
        killed_at = time.monotonic()
        audio, events = watched.result(timeout=300)
    assert events[-1].HasField("done")
    assert audio == expected
    row = gateways.row("killed")
    assert (row["state"], row["attempt"]) == (SUCCEEDED, 2)
    resumed = [
        index for index in range(3) if index != runner and "resuming after block" in gateways.log(index)
    ]
    assert resumed, "the job resumed after its kept blocks, not from block 0"
    assert time.monotonic() - killed_at < 120
    gateways.launch(runner)
    gateways.wait_serving(runner, 180)


def test_a_database_restart_mid_song(demo_models: Path, tmp_path: Path) -> None:
    server = PostgresServer()
    server.start()
    replicas = Gateways(2, server.url(), demo_models, tmp_path, job_lease_s=5)
    try:
        replicas.start()
        expected = _song(replicas, "before-restart", seconds=40)
        submitter = replicas.client(0)
        submitter.submit(request("through-restart", seconds=40), timeout=10)
        watcher = replicas.client((replicas.runner("through-restart") + 1) % 2)
        with ThreadPoolExecutor(1) as pool:
            watched = pool.submit(_watch, watcher, "through-restart")
            _wait_for_blocks(replicas, "through-restart", 2)
            server.stop()
            time.sleep(2)
            server.start()
            audio, events = watched.result(timeout=300)
        assert events[-1].HasField("done") and audio == expected
        for index in range(2):
            client = replicas.client(index)
            job = client.stub.GetJob(
                song_pb2.GetJobRequest(job_id="through-restart"), metadata=client.metadata
            ).job
            assert job.state == SUCCEEDED
    finally:
        replicas.stop()
        server.close()
