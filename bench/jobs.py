"""Job submissions per second, the time from a gateway kill to the song resuming, and the time a
cancel takes, for gateways on SQLite (one gateway: the baseline) and on PostgreSQL (one and three).

Real gateway processes on 127.0.0.1 (in-process stages on the demo model) and a real PostgreSQL
from the dev dependencies' server wheel. Submissions: `--submissions` SubmitJob calls from 8 client
threads spread over the gateways, with a job time limit so short that each claimed job fails at
once (the queue is drained as fast as the gateways claim, and no song competes for the CPU).
Kill: a song runs, the gateway running it is SIGKILLed after 3 blocks, and the clock stops when a
new block of that song is recorded (one gateway: it is restarted at once; three: a survivor takes
over when the lease expires). Cancel: CancelJob through a gateway that does not run the song (the
running one when there is only one), until the job is CANCELLED. Ratios are against SQLite.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gateway.model_store import write_demo
from songsmith.v1 import song_pb2
from tests.gateway.replicas import Gateways
from tests.gateway.songs import request
from tests.postgres import PostgresServer

RUNNING = song_pb2.JOB_STATE_RUNNING


def _submissions_per_second(gateways: Gateways, count: int) -> float:
    clients = [gateways.client(index) for index in range(len(gateways.ports))]
    for client in clients:
        client.stub.ListJobs(song_pb2.ListJobsRequest(page_size=1), metadata=client.metadata, timeout=30)

    def submit(number: int) -> None:
        client = clients[number % len(clients)]
        message = request(f"submit-{number}", seconds=2)
        client.submit(message, timeout=60)

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(submit, range(count)))
    return count / (time.perf_counter() - started)


def _job(gateways: Gateways, index: int, job_id: str) -> song_pb2.Job:
    client = gateways.client(index)
    return client.stub.GetJob(song_pb2.GetJobRequest(job_id=job_id), metadata=client.metadata, timeout=30)


def _runner(gateways: Gateways, job_id: str, shared: bool) -> int:
    return gateways.runner(job_id) if shared else 0


def _wait(condition, timeout: float = 300.0, step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the bench waited too long")
        time.sleep(step)


def _kill_to_resume(gateways: Gateways, shared: bool) -> float:
    client = gateways.client(0)
    client.submit(request("killed", seconds=60), timeout=30)
    runner = _runner(gateways, "killed", shared)
    _wait(lambda: _job(gateways, runner, "killed").blocks_done >= 3)
    kept = _job(gateways, runner, "killed").blocks_done
    gateways.kill(runner)
    killed_at = time.perf_counter()
    if len(gateways.ports) == 1:
        gateways.launch(runner)
        gateways.wait_serving(runner, 300)
    observer = 0 if len(gateways.ports) == 1 else (runner + 1) % len(gateways.ports)

    def resumed() -> bool:
        job = _job(gateways, observer, "killed")
        return job.state != RUNNING or job.blocks_done > kept

    _wait(resumed)
    return time.perf_counter() - killed_at


def _cancel_seconds(gateways: Gateways, shared: bool, repeats: int) -> float:
    timings = []
    for number in range(repeats):
        job_id = f"cancelled-{number}"
        submitter = gateways.client(0)
        submitter.submit(request(job_id, seconds=120), timeout=30)
        runner = _runner(gateways, job_id, shared)
        _wait(lambda job_id=job_id, runner=runner: _job(gateways, runner, job_id).blocks_done >= 1)
        other = gateways.client((runner + 1) % len(gateways.ports))
        started = time.perf_counter()
        job = other.stub.CancelJob(
            song_pb2.CancelJobRequest(job_id=job_id), metadata=other.metadata, timeout=60
        ).job
        timings.append(time.perf_counter() - started)
        assert job.state == song_pb2.JOB_STATE_CANCELLED, job
    return statistics.median(timings)


def main() -> int:
    """Measure each setup and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=300)
    parser.add_argument("--cancels", type=int, default=3)
    parser.add_argument("--lease-s", type=float, default=2.0)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        write_demo(root / "models")
        server = PostgresServer()
        server.start()
        try:
            setups = [
                ("SQLite, 1 gateway", 1, lambda phase: str(root / f"jobs-{phase}.sqlite3")),
                ("PostgreSQL, 1 gateway", 1, lambda phase: server.create_database()),
                ("PostgreSQL, 3 gateways", 3, lambda phase: server.create_database()),
            ]
            for name, count, new_database in setups:
                folder = root / name.replace(" ", "").replace(",", "-")
                database = new_database("submit")
                shared = database.startswith("postgresql://")
                options = {"job_lease_s": args.lease_s}
                submitting = Gateways(
                    count,
                    database,
                    root / "models",
                    folder,
                    job_timeout_s=0.001,
                    max_queued_jobs=args.submissions + 10,
                    **options,
                )
                submitting.start(300)
                try:
                    rate = _submissions_per_second(submitting, args.submissions)
                finally:
                    submitting.stop()
                gateways = Gateways(count, new_database("songs"), root / "models", folder, **options)
                gateways.start(300)
                try:
                    cancel = _cancel_seconds(gateways, shared, args.cancels)
                    takeover = _kill_to_resume(gateways, shared)
                finally:
                    gateways.stop()
                rows.append((name, rate, takeover, cancel))
                print(
                    f"{name}: {rate:.0f} submissions/s,",
                    f"kill to resume {takeover:.1f} s, cancel {cancel:.2f} s",
                )
        finally:
            server.close()
    baseline = rows[0][1]
    print(f"\ndemo model, {args.submissions} SubmitJob calls from 8 threads; lease {args.lease_s:g} s")
    print("| setup | submissions/s | vs SQLite | kill to song resumed s | cancel s (median) |")
    print("|---|---:|---:|---:|---:|")
    for name, rate, takeover, cancel in rows:
        print(f"| {name} | {rate:.0f} | {rate / baseline:.2f} | {takeover:.1f} | {cancel:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
