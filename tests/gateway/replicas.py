"""Several gateway processes on one job database: `songsmith serve gateway` with in-process stages on
the demo model, every gateway on 127.0.0.1 with its own port, one results folder for all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import psycopg
from grpc_health.v1 import health_pb2

from gateway.client import SongClient
from gateway.launcher import STAGE_THREADING
from tests.helpers import free_port, health_status

TOKENS = {"alice": "token-of-alice", "bob": "token-of-bob", "ops": "token-of-ops"}
TOKENS_FILE = f"""# test identities
{TOKENS["alice"]} name=alice
{TOKENS["bob"]} name=bob
{TOKENS["ops"]} name=ops role=admin
"""


class Gateways:
    """N gateway processes sharing `database` (a PostgreSQL URL) and a results folder."""

    def __init__(self, count: int, database: str, models: Path, folder: Path, **options: object) -> None:
        """Plan `count` gateways; `options` become `--flag value` of every gateway (e.g. job_lease_s)."""
        self.database = database
        self.models = models
        self.folder = folder
        self.options = {"job_lease_s": 2.0, "job_poll_s": 0.2, **options}
        self.ports = [free_port() for _ in range(count)]
        self.processes: list[subprocess.Popen | None] = [None] * count
        folder.mkdir(parents=True, exist_ok=True)
        self.tokens_file = folder / "tokens"
        self.tokens_file.write_text(TOKENS_FILE, encoding="utf-8")

    def address(self, index: int) -> str:
        """Where gateway `index` listens."""
        return f"127.0.0.1:{self.ports[index]}"

    def client(self, index: int, identity: str = "alice") -> SongClient:
        """A client of gateway `index` with the token of `identity`."""
        return SongClient(self.address(index), TOKENS[identity])

    def launch(self, index: int) -> None:
        """Start gateway `index` (logging to `<folder>/gateway-<index>.log`)."""
        flags = [
            *("--host", "127.0.0.1", "--port", str(self.ports[index]), "--metrics-port", "0"),
            *("--model-root", str(self.models), "--jobs-db", self.database),
            *("--results-dir", str(self.folder / "results"), "--auth-tokens-file", str(self.tokens_file)),
            *("--max-running-jobs", "2", "--drain-delay-s", "0", "--log-format", "text"),
        ]
        for name, value in self.options.items():
            flags += [f"--{name.replace('_', '-')}", str(value)]
        with (self.folder / f"gateway-{index}.log").open("ab") as log:
            self.processes[index] = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "serve", "gateway", *flags],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **STAGE_THREADING},
            )

    def start(self, timeout: float = 180.0) -> None:
        """Start every gateway and wait until all serve."""
        for index in range(len(self.ports)):
            self.launch(index)
        for index in range(len(self.ports)):
            self.wait_serving(index, timeout)

    def wait_serving(self, index: int, timeout: float) -> None:
        """Wait until gateway `index` reports SERVING."""
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.address(index)) as channel:
            while health_status(channel) != health_pb2.HealthCheckResponse.SERVING:
                process = self.processes[index]
                if process is None or process.poll() is not None:
                    raise AssertionError(f"gateway {index} exited: {self.log(index)}")
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"gateway {index} not serving after {timeout:.0f} s: {self.log(index)}"
                    )
                time.sleep(0.1)

    def log(self, index: int) -> str:
        """The log of gateway `index`."""
        path = self.folder / f"gateway-{index}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def runner(self, job_id: str, timeout: float = 60.0) -> int:
        """The index of the gateway holding the job's lease (waiting until one does)."""
        pids = {process.pid: index for index, process in enumerate(self.processes) if process is not None}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            holder = self.row(job_id)["lease_holder"]
            if holder:
                return pids[int(holder.split("/")[1])]
            time.sleep(0.05)
        raise AssertionError(f"no gateway runs {job_id}")

    def row(self, job_id: str) -> dict:
        """The job's row in the database."""
        with psycopg.connect(self.database) as conn:
            cursor = conn.execute("SELECT * FROM jobs WHERE job_id = %s", (job_id,))
            values = cursor.fetchone()
            assert values is not None, f"no job {job_id} in the database"
            return dict(zip([column.name for column in cursor.description], values, strict=True))

    def kill(self, index: int) -> None:
        """SIGKILL gateway `index`."""
        process = self.processes[index]
        assert process is not None
        process.kill()
        process.wait()
        self.processes[index] = None

    def stop(self) -> None:
        """SIGTERM every gateway still running, then SIGKILL what is left after 30 s."""
        running = [p for p in self.processes if p is not None and p.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
