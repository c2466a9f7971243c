"""A jobs database that stops taking writes, as a client of the gateway sees it (issue 18, item 4):
a gateway process on 127.0.0.1 (in-process stages on the demo model) while another process holds
the SQLite file's write lock, and while its PostgreSQL server is stopped."""

from __future__ import annotations

import signal
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2

from gateway.client import SongClient
from songsmith.v1 import song_pb2
from tests.gateway.replicas import Gateways
from tests.gateway.songs import assemble, request
from tests.helpers import health_status
from tests.postgres import PostgresServer

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


def _health(gateways: Gateways) -> int:
    with grpc.insecure_channel(gateways.address(0)) as channel:
        return health_status(channel)


def _seconds_until_health(gateways: Gateways, status: int, timeout: float) -> float:
    """How long the gateway took to report `status` (failing the test after `timeout`)."""
    started = time.monotonic()
    while _health(gateways) != status:
        assert time.monotonic() - started < timeout, f"health never became {status}"
        time.sleep(0.1)
    return time.monotonic() - started


def _job(client: SongClient, job_id: str) -> song_pb2.Job:
    return client.stub.GetJob(song_pb2.GetJobRequest(job_id=job_id), metadata=client.metadata, timeout=10).job


def test_a_held_sqlite_lock_never_wedges_a_job(demo_models: Path, tmp_path: Path) -> None:
    """While another process holds the jobs file's write lock for 8 s (four times the store's retry
    budget): health is NOT_SERVING, reads and CancelJob answer promptly, and afterwards the song
    finishes identical to an undisturbed one, health is SERVING again and SIGTERM stops the gateway."""
    database = tmp_path / "jobs.sqlite3"
    gateways = Gateways(
        1, str(database), demo_models, tmp_path, max_running_jobs=1, jobs_db_retry_s=2, job_lease_s=3
    )
    try:
        gateways.start()
        client = gateways.client(0)
        expected, _ = assemble(client.generate(request("undisturbed", seconds=20), timeout=120))
        client.submit(request("through-the-lock", seconds=20))
        client.submit(request("cancelled-meanwhile"))
        with ThreadPoolExecutor(1) as pool:
            watched = pool.submit(lambda: assemble(client.watch("through-the-lock", timeout=300)))
            while _job(client, "through-the-lock").blocks_done < 1:
                time.sleep(0.05)
            locker = sqlite3.connect(database, isolation_level=None)
            locker.execute("BEGIN IMMEDIATE")
            locked_at = time.monotonic()
            assert _seconds_until_health(gateways, NOT_SERVING, timeout=6) < 6
            began = time.monotonic()
            assert _job(client, "through-the-lock").state == song_pb2.JOB_STATE_RUNNING
            assert time.monotonic() - began < 2, "a read waited for the lock"
            began = time.monotonic()
            try:
                cancelled = client.stub.CancelJob(
                    song_pb2.CancelJobRequest(job_id="cancelled-meanwhile"),
                    metadata=client.metadata,
                    timeout=30,
                ).job.state
            except grpc.RpcError as exc:
                cancelled = exc.code()
            assert time.monotonic() - began < 10, "CancelJob waited on the lock"
            assert cancelled in (grpc.StatusCode.UNAVAILABLE, song_pb2.JOB_STATE_CANCELLED)
            time.sleep(max(0.0, 8 - (time.monotonic() - locked_at)))
            locker.execute("ROLLBACK")
            locker.close()
            assert _seconds_until_health(gateways, SERVING, timeout=10) < 10
            audio, events = watched.result(timeout=300)
        assert events[-1].HasField("done") and audio == expected
        assert _job(client, "through-the-lock").state == song_pb2.JOB_STATE_SUCCEEDED
        locker = sqlite3.connect(database, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")
        process = gateways.processes[0]
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=60) == 0, "SIGTERM with the lock held"
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        client.close()
    finally:
        gateways.stop()


def test_a_stopped_postgresql_server_is_not_serving(demo_models: Path, tmp_path: Path) -> None:
    """Health follows the PostgreSQL server: NOT_SERVING while it is stopped, SERVING once back."""
    server = PostgresServer()
    server.start()
    gateways = Gateways(1, server.url(), demo_models, tmp_path, jobs_db_retry_s=2)
    try:
        gateways.start()
        server.stop()
        assert _seconds_until_health(gateways, NOT_SERVING, timeout=10) < 10
        server.start()
        assert _seconds_until_health(gateways, SERVING, timeout=20) < 20
        client = gateways.client(0)
        audio, events = assemble(client.generate(request("after-the-restart"), timeout=120))
        assert events[-1].HasField("done") and audio
        client.close()
    finally:
        gateways.stop()
        server.close()
