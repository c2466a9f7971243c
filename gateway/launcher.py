"""`songsmith up`: the four stages and the gateway as local processes on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.local_stages import ModelPaths

STAGES = ("tokenizer", "style", "diffusion", "vocoder")


@dataclass(frozen=True)
class Service:
    """One launched process: its name, gRPC port and metrics port."""

    name: str
    port: int
    metrics_port: int

    @property
    def address(self) -> str:
        """Where it listens."""
        return f"127.0.0.1:{self.port}"


def plan(base_port: int, metrics_base_port: int) -> list[Service]:
    """Gateway on `base_port`, stages on the next four ports (metrics likewise)."""
    names = ("gateway", *STAGES)
    return [
        Service(name, base_port + i, metrics_base_port + i if metrics_base_port else 0)
        for i, name in enumerate(names)
    ]


def _arguments(service: Service, services: list[Service], paths: ModelPaths, var_dir: Path) -> list[str]:
    common = ["--host", "127.0.0.1", "--port", str(service.port), "--metrics-port", str(service.metrics_port)]
    if service.name == "gateway":
        targets = {s.name: s.address for s in services if s.name != "gateway"}
        return [
            *common,
            *("--tokenizer-target", targets["tokenizer"], "--style-target", targets["style"]),
            *("--diffusion-target", targets["diffusion"], "--vocoder-target", targets["vocoder"]),
            *("--jobs-db", str(var_dir / "jobs.sqlite3"), "--results-dir", str(var_dir / "results")),
        ]
    if service.name == "style":
        return [*common, "--model-dir", str(paths.mulan)]
    if service.name in ("diffusion", "vocoder"):
        return [*common, "--model-dir", str(paths.diffrhythm2)]
    return common


def stage_threads() -> int:
    """Torch threads per stage process: half the cores, as diffusion and the vocoder compute at once."""
    return max(1, (os.cpu_count() or 2) // 2)


# Idle OpenMP threads sleep instead of spinning (spinning threads of one process starve the
# other's). Values already in the environment win.
STAGE_THREADING = {"OMP_NUM_THREADS": str(stage_threads()), "OMP_WAIT_POLICY": "PASSIVE"}


def _serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


class LocalStack:
    """Starts, watches and stops the five processes."""

    def __init__(self, services: list[Service], paths: ModelPaths, var_dir: Path) -> None:
        """Plan the processes; nothing starts until `start`."""
        self.services = services
        self.paths = paths
        self.var_dir = var_dir
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self) -> None:
        """Launch every process, logging to `var_dir/logs/<name>.log`."""
        for service in self.services:
            self.launch(service.name)

    def launch(self, name: str) -> None:
        """(Re)start one process by name."""
        service = next(s for s in self.services if s.name == name)
        logs = self.var_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "gateway.cli", "serve", service.name]
        command += _arguments(service, self.services, self.paths, self.var_dir)
        with (logs / f"{service.name}.log").open("ab") as log:
            self.processes[service.name] = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**STAGE_THREADING, **os.environ, "SONGSMITH_DRAIN_DELAY_S": "0"},
            )

    def wait_healthy(self, timeout: float) -> list[str]:
        """Wait until every process reports SERVING; return the names that did not in time."""
        pending = {service.name: service.address for service in self.services}
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for name, address in list(pending.items()):
                if self.processes[name].poll() is not None:
                    return [f"{name} exited with code {self.processes[name].returncode}"]
                if _serving(address):
                    del pending[name]
            time.sleep(0.2)
        return [f"{name} not healthy after {timeout:.0f} s" for name in pending]

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM every process (gateway first), then kill what is left after `grace` seconds."""
        for name in ("gateway", *STAGES):
            process = self.processes.get(name)
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
