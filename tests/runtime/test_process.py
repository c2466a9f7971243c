"""A stage as its own process: SIGTERM drains in-flight calls, and one call is one trace over OTLP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import wrappers_pb2
from grpc_health.v1 import health_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from services.runtime.tracing import traced_channel
from tests.helpers import free_port, health_status, wait_for_health
from tests.otlp import otlp_receiver
from tests.runtime.harness import SERVICE, HarnessClient

ROOT = Path(__file__).resolve().parents[2]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def otlp():
    """An OTLP receiver listening on 127.0.0.1; yields (receiver, port)."""
    with otlp_receiver() as running:
        yield running


def _start_harness(port: int, **env: str) -> subprocess.Popen:
    environment = {**os.environ, "SONGSMITH_DRAIN_DELAY_S": "1", **env}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.runtime.harness", "--port", str(port), "--log-format", "text"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_sigterm_lets_the_in_flight_call_finish() -> None:
    port = free_port()
    process = _start_harness(port)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        wait_for_health(channel, SERVING, timeout=60)
        call = HarnessClient(channel).sleep.future(wrappers_pb2.DoubleValue(value=2.0), timeout=30)
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        wait_for_health(channel, NOT_SERVING, timeout=5)
        assert call.result().value == "slept"
        assert process.wait(timeout=30) == 0
        assert health_status(channel) == health_pb2.HealthCheckResponse.UNKNOWN  # gone
    finally:
        channel.close()
        if process.poll() is None:
            process.kill()
        output = process.stdout.read()
    assert "draining" in output and "stopped" in output


def test_one_call_is_one_trace_with_client_and_server_spans(otlp) -> None:
    receiver, receiver_port = otlp
    port = free_port()
    process = _start_harness(
        port,
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver_port}",
        OTEL_EXPORTER_OTLP_INSECURE="true",
        OTEL_SERVICE_NAME="harness-under-test",
        OTEL_BSP_SCHEDULE_DELAY="50",
    )
    client_provider = TracerProvider(resource=Resource.create({SERVICE_NAME: "test-client"}))
    client_provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{receiver_port}", insecure=True))
    )
    plain = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        wait_for_health(plain, SERVING, timeout=60)
        client = HarnessClient(traced_channel(plain, client_provider, target=f"127.0.0.1:{port}"))
        assert client.sleep(wrappers_pb2.DoubleValue(value=0.01), timeout=10).value == "slept"
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    finally:
        plain.close()
        client_provider.shutdown()
        if process.poll() is None:
            process.kill()
    method = f"{SERVICE}/Sleep"
    spans = [received for received in receiver.spans if received.span.name == method]
    by_kind = {received.span.kind: received for received in spans}
    client = by_kind[trace_pb2.Span.SPAN_KIND_CLIENT]
    server = by_kind[trace_pb2.Span.SPAN_KIND_SERVER]
    assert (client.service, server.service) == ("test-client", "harness-under-test")
    assert client.span.trace_id == server.span.trace_id
    assert server.span.parent_span_id == client.span.span_id
    assert {received.span.trace_id for received in spans} == {client.span.trace_id}
    for received in (client, server):
        attributes = received.attributes
        assert attributes["rpc.system.name"] == "grpc"
        assert attributes["rpc.method"] == method
        assert attributes["rpc.response.status_code"] == "OK"
    assert client.attributes["server.address"] == "127.0.0.1"
    assert client.attributes["server.port"] == port
    assert server.attributes["network.peer.address"] == "127.0.0.1"
