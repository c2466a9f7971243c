"""A stage as its own process: SIGTERM drains in-flight calls, and one call is one trace over OTLP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from google.protobuf import wrappers_pb2
from grpc_health.v1 import health_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from services.runtime.tracing import traced_channel
from tests.helpers import free_port, health_status, wait_for_health
from tests.runtime.harness import SERVICE, HarnessClient

ROOT = Path(__file__).resolve().parents[2]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class OtlpReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """A minimal OTLP/gRPC trace collector that keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, trace_pb2.Span]] = []
        self._lock = threading.Lock()

    def Export(self, request, context):  # noqa: N802 - gRPC method name
        with self._lock:
            for resource_spans in request.resource_spans:
                attributes = resource_spans.resource.attributes
                service = next((a.value.string_value for a in attributes if a.key == "service.name"), "")
                for scope in resource_spans.scope_spans:
                    self.spans += [(service, span) for span in scope.spans]
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def otlp_receiver():
    """An OTLP receiver listening on 127.0.0.1; yields (receiver, port)."""
    receiver = OtlpReceiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield receiver, port
    server.stop(0)


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


def test_one_call_is_one_trace_with_client_and_server_spans(otlp_receiver) -> None:
    receiver, receiver_port = otlp_receiver
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
        client = HarnessClient(traced_channel(plain, client_provider))
        assert client.sleep(wrappers_pb2.DoubleValue(value=0.01), timeout=10).value == "slept"
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    finally:
        plain.close()
        client_provider.shutdown()
        if process.poll() is None:
            process.kill()
    method = f"/{SERVICE}/Sleep"
    spans = [(service, span) for service, span in receiver.spans if span.name == method]
    by_kind = {span.kind: (service, span) for service, span in spans}
    client_service, client_span = by_kind[trace_pb2.Span.SPAN_KIND_CLIENT]
    server_service, server_span = by_kind[trace_pb2.Span.SPAN_KIND_SERVER]
    assert (client_service, server_service) == ("test-client", "harness-under-test")
    assert client_span.trace_id == server_span.trace_id
    assert server_span.parent_span_id == client_span.span_id
    assert {span.trace_id for _, span in spans} == {client_span.trace_id}
