"""Test helpers shared by every stage: free ports, in-process stage servers, waiting for health."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.runtime.config import ServerConfig
from services.runtime.server import StageServer, StageSpec


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_block(size: int) -> int:
    """The first of `size` consecutive TCP ports on 127.0.0.1 that were free a moment ago (the search
    starts at a random place, so test sessions running side by side do not pick the same block)."""
    start = 41000 + random.randrange(97) * 97
    for base in [*range(start, 60000, 97), *range(41000, start, 97)]:
        try:
            for port in range(base, base + size):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free port block")


def health_status(channel: grpc.Channel, service: str = "") -> int:
    """The health status a server reports for `service` (UNKNOWN when it cannot be reached)."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2).status
    except grpc.RpcError:
        return health_pb2.HealthCheckResponse.UNKNOWN


def wait_for_health(channel: grpc.Channel, status: int, service: str = "", timeout: float = 60.0) -> None:
    """Poll until the server reports `status`, failing the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if health_status(channel, service) == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"health never became {health_pb2.HealthCheckResponse.ServingStatus.Name(status)}")


@contextmanager
def running_stage(
    spec: StageSpec, config: ServerConfig | None = None, load: bool = True
) -> Iterator[StageServer]:
    """A StageServer for `spec` on 127.0.0.1 (free port), loaded, stopped at the end."""
    server = StageServer(config or ServerConfig(port=0, drain_delay_s=0), spec)
    server.start()
    if load:
        server.load()
    try:
        yield server
    finally:
        server.stop(grace=1)
