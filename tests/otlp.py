"""A minimal OTLP/gRPC trace collector for tests, from opentelemetry-proto's messages and stubs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2


@dataclass(frozen=True)
class ReceivedSpan:
    """A span as exported, with the `service.name` of the process that sent it."""

    service: str
    span: trace_pb2.Span

    @property
    def attributes(self) -> dict[str, object]:
        """The span's attributes as plain values."""
        return {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in self.span.attributes}


class OtlpReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """Keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()

    def Export(self, request, context):  # noqa: N802 - gRPC method name
        """Keep the spans of one export."""
        with self._lock:
            for resource_spans in request.resource_spans:
                attributes = resource_spans.resource.attributes
                service = next((a.value.string_value for a in attributes if a.key == "service.name"), "")
                for scope in resource_spans.scope_spans:
                    self.spans += [ReceivedSpan(service, span) for span in scope.spans]
        return trace_service_pb2.ExportTraceServiceResponse()

    def received(self) -> list[ReceivedSpan]:
        """The spans so far."""
        with self._lock:
            return list(self.spans)

    def wait_for(self, predicate, timeout: float = 30.0) -> list[ReceivedSpan]:
        """Wait until `predicate(spans)` holds; the spans then (AssertionError after `timeout`)."""
        deadline = time.monotonic() + timeout
        while not predicate(spans := self.received()):
            assert time.monotonic() < deadline, f"spans never arrived: {[s.span.name for s in spans]}"
            time.sleep(0.1)
        return spans


@contextmanager
def otlp_receiver() -> Iterator[tuple[OtlpReceiver, int]]:
    """An OTLP receiver listening on 127.0.0.1; yields it and its port."""
    receiver = OtlpReceiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield receiver, port
    finally:
        server.stop(0)
