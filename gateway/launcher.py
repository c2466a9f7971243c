"""`songsmith up`: the stages the routed models need and the gateway, as local processes on 127.0.0.1.

Each distinct stage of the models runs once: two models that share the lyric tokenizer or a
MuQ-MuLan style encoder share its process. The gateway gets the routing of every model to the
addresses of its stages, and, when a chart model is given, the chart stage's address (the chart stage
serves the songs of every model).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.models import ModelRoute

GATEWAY = "gateway"
CHART = "chart"


@dataclass(frozen=True)
class Service:
    """One launched process: its name, the component it runs, its ports and its model folder."""

    name: str
    component: str
    port: int
    metrics_port: int
    model_dir: Path | None = None

    @property
    def address(self) -> str:
        """Where it listens."""
        return f"127.0.0.1:{self.port}"


@dataclass(frozen=True)
class StackPlan:
    """The processes of a local stack (the gateway first), the routing the gateway gets and the
    chart stage's address ("" without one)."""

    services: list[Service]
    routes: dict[str, dict[str, str]]
    chart_target: str = ""

    @property
    def gateway(self) -> Service:
        """The gateway process."""
        return self.services[0]


def plan(
    routes: list[ModelRoute], base_port: int, metrics_base_port: int, chart_model: Path | None = None
) -> StackPlan:
    """The gateway on `base_port`, then one process per distinct stage of `routes` on the next ports
    (metrics ports likewise; 0 disables them), then the chart stage on `chart_model` when given. A
    stage's first process is named after the stage, a second one of the same stage after its model
    too (`diffusion-musicgen-small`)."""
    services = [Service(GATEWAY, GATEWAY, base_port, metrics_base_port)]
    by_target: dict[tuple[str, str], Service] = {}
    routing: dict[str, dict[str, str]] = {}
    for route in routes:
        routing[route.name] = {}
        for stage, target in route.stages.items():
            key = (stage, target)
            if key not in by_target:
                taken = any(service.component == stage for service in by_target.values())
                position = len(services)
                by_target[key] = Service(
                    f"{stage}-{route.name}" if taken else stage,
                    stage,
                    base_port + position,
                    metrics_base_port + position if metrics_base_port else 0,
                    route.local_path(stage),
                )
                services.append(by_target[key])
            routing[route.name][stage] = by_target[key].address
    if chart_model is None:
        return StackPlan(services, routing)
    position = len(services)
    chart = Service(
        CHART,
        CHART,
        base_port + position,
        metrics_base_port + position if metrics_base_port else 0,
        chart_model,
    )
    return StackPlan([*services, chart], routing, chart.address)


def _arguments(service: Service, stack: StackPlan, var_dir: Path) -> list[str]:
    common = ["--host", "127.0.0.1", "--port", str(service.port), "--metrics-port", str(service.metrics_port)]
    if service.component == GATEWAY:
        return [
            *common,
            *("--models", yaml.safe_dump(stack.routes, sort_keys=False)),
            *("--chart-target", stack.chart_target),
            *("--jobs-db", str(var_dir / "jobs.sqlite3"), "--results-dir", str(var_dir / "results")),
        ]
    if service.model_dir is not None:
        return [*common, "--model-dir", str(service.model_dir)]
    return common


def stage_threads() -> int:
    """Torch threads per stage process: half the cores, as generation and the vocoder compute at once."""
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
    """Starts, watches and stops the processes of a plan."""

    def __init__(self, stack: StackPlan, var_dir: Path, flags: dict[str, list[str]] | None = None) -> None:
        """Plan the processes; nothing starts until `start`. `flags` adds command-line flags to the
        processes it names (e.g. `{"diffusion": ["--max-batch", "1"]}`)."""
        self.plan = stack
        self.services = stack.services
        self.var_dir = var_dir
        self.flags = flags or {}
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
        command = [sys.executable, "-m", "gateway.cli", "serve", service.component]
        command += _arguments(service, self.plan, self.var_dir) + self.flags.get(name, [])
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
        for service in self.services:
            process = self.processes.get(service.name)
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
