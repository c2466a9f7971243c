"""Prometheus metrics of every stage: `songsmith_` prefix, seconds and bytes as units.

Requests by gRPC code, a duration histogram, calls in flight, queue depth and bytes in and out,
each labelled by `stage` (and `method`, `code` where they apply); the size and duration of every
batched step where a stage batches songs. Served on the metrics port.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import grpc
from google.protobuf.message import Message
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from services.runtime.handlers import ApplicationInterceptor

REQUESTS = Counter(
    "songsmith_requests_total", "Calls finished, by gRPC status code.", ["stage", "method", "code"]
)
DURATION = Histogram(
    "songsmith_request_duration_seconds",
    "Wall time of a call from arrival to its last message.",
    ["stage", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200),
)
IN_FLIGHT = Gauge("songsmith_requests_in_flight", "Calls admitted or waiting, not yet finished.", ["stage"])
QUEUE_DEPTH = Gauge("songsmith_queue_depth", "Calls waiting for an admission slot.", ["stage"])
BATCH_SIZE = Histogram(
    "songsmith_batch_size",
    "Songs (generation) or windows (vocoder) computed together in one batched step.",
    ["stage"],
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128),
)
BATCH_STEP = Histogram(
    "songsmith_batch_step_seconds",
    "Wall time of one batched step.",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RECEIVED_BYTES = Counter("songsmith_received_bytes_total", "Serialized request bytes received.", ["stage"])
SENT_BYTES = Counter("songsmith_sent_bytes_total", "Serialized response bytes sent.", ["stage"])


def start_metrics_server(host: str, port: int) -> None:
    """Serve /metrics on `host:port` from a daemon thread (port 0 disables it)."""
    if port:
        start_http_server(port, addr=host)


def _size(message: Message | bytes) -> int:
    return len(message) if isinstance(message, bytes) else message.ByteSize()


def _counted(messages: Iterable[Any], counter: Counter) -> Iterator[Any]:
    for message in messages:
        counter.inc(_size(message))
        yield message


class MetricsInterceptor(ApplicationInterceptor):
    """Counts, times and sizes every application call of one stage (health and reflection aside)."""

    def __init__(self, stage: str) -> None:
        """Label every series with `stage`."""
        self._stage = stage

    def _finish(
        self, method: str, context: grpc.ServicerContext, started: float, outcome: grpc.StatusCode
    ) -> None:
        code = context.code() or outcome
        REQUESTS.labels(self._stage, method, code.name).inc()
        DURATION.labels(self._stage, method).observe(time.perf_counter() - started)
        IN_FLIGHT.labels(self._stage).dec()

    def wrap(self, behavior: Callable[..., Any], streaming: bool, method: str) -> Callable[..., Any]:
        """Count, time and size the call."""
        received, sent = RECEIVED_BYTES.labels(self._stage), SENT_BYTES.labels(self._stage)

        def count_request(request: Any) -> Any:
            if isinstance(request, (Message, bytes)):
                received.inc(_size(request))
                return request
            return _counted(request, received)

        if streaming:

            def stream_behavior(request, context):
                IN_FLIGHT.labels(self._stage).inc()
                started, outcome = time.perf_counter(), grpc.StatusCode.INTERNAL
                try:
                    yield from _counted(behavior(count_request(request), context), sent)
                    outcome = grpc.StatusCode.OK
                except GeneratorExit:
                    outcome = grpc.StatusCode.CANCELLED
                    raise
                finally:
                    self._finish(method, context, started, outcome)

            return stream_behavior

        def unary_behavior(request, context):
            IN_FLIGHT.labels(self._stage).inc()
            started, outcome = time.perf_counter(), grpc.StatusCode.INTERNAL
            try:
                response = behavior(count_request(request), context)
                sent.inc(_size(response))
                outcome = grpc.StatusCode.OK
                return response
            finally:
                self._finish(method, context, started, outcome)

        return unary_behavior
