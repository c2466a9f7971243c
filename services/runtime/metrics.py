"""Prometheus metrics of every stage: `songsmith_` prefix, seconds and bytes as units.

Requests by gRPC code, a duration histogram, calls in flight, queue depth and wait, bytes in and
out, the model's load time, frames made (generation) or decoded (vocoder), batch sizes where a
stage batches songs, and GPU memory where there is a GPU; each labelled by `stage` (and `method`,
`code` where they apply). Every series whose labels are known when the server starts exists from
then on at zero (`prepare_stage`), so an autoscaler sees an idle stage's queue of 0. Served on the
metrics port. README.md's metrics table lists every family.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.message import Message
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

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
QUEUE_WAIT = Histogram(
    "songsmith_queue_wait_seconds",
    "Time an admitted call waited for its admission slot (0 when one was free).",
    ["stage"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
MODEL_LOAD = Gauge(
    "songsmith_model_load_seconds",
    "How long loading and warming the stage's model took; 0 until loaded.",
    ["stage"],
)
FRAMES = Counter(
    "songsmith_frames_total",
    "Frames generated (generation stage) or received for decoding (vocoder); rate() is frames per second.",
    ["stage"],
)
GPU_MEMORY_ALLOCATED = "songsmith_gpu_memory_allocated_bytes"
GPU_MEMORY_RESERVED = "songsmith_gpu_memory_reserved_bytes"


@dataclass(frozen=True)
class FrameCount:
    """Where the frames a stage works on travel, for `songsmith_frames_total`: in the requests of
    `method` (the vocoder decodes what it receives) or in its responses (the generation stage)."""

    method: str
    in_request: Callable[[Any], int] | None = None
    in_response: Callable[[Any], int] | None = None


def service_methods(service_name: str) -> list[str]:
    """The `/package.Service/Method` names of a service in the descriptor pool (none if absent)."""
    try:
        service = descriptor_pool.Default().FindServiceByName(service_name)
    except KeyError:
        return []
    return [f"/{service.full_name}/{method.name}" for method in service.methods]


class _GpuMemory:
    """GPU memory in use and reserved by torch's allocator, read at scrape time, for every stage of
    this process. Nothing is reported before torch is imported or where CUDA has no device; torch is
    never imported for it, and no CUDA context is created by reading it."""

    def __init__(self) -> None:
        self.stages: list[str] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        torch = sys.modules.get("torch")
        if torch is None or not self.stages or not torch.cuda.is_available():
            return
        allocated = GaugeMetricFamily(
            GPU_MEMORY_ALLOCATED,
            "GPU memory held by tensors (torch's allocator).",
            labels=["stage", "device"],
        )
        reserved = GaugeMetricFamily(
            GPU_MEMORY_RESERVED,
            "GPU memory reserved by torch's caching allocator (in use and cached).",
            labels=["stage", "device"],
        )
        for index in range(torch.cuda.device_count()):
            for stage in self.stages:
                allocated.add_metric([stage, f"cuda:{index}"], torch.cuda.memory_allocated(index))
                reserved.add_metric([stage, f"cuda:{index}"], torch.cuda.memory_reserved(index))
        yield allocated
        yield reserved


_GPU_MEMORY = _GpuMemory()
REGISTRY.register(_GPU_MEMORY)


def prepare_stage(stage: str, methods: Iterable[str], frames: bool = False, batches: bool = False) -> None:
    """Create at zero every series of `stage` whose labels are known now: its methods (code OK),
    calls in flight, queue depth and wait, bytes, model load time; frames when the stage counts
    them, batch sizes when it batches. Its GPU memory is reported from now on where there is a GPU."""
    for method in methods:
        REQUESTS.labels(stage, method, grpc.StatusCode.OK.name)
        DURATION.labels(stage, method)
    for family in (IN_FLIGHT, QUEUE_DEPTH, RECEIVED_BYTES, SENT_BYTES, QUEUE_WAIT, MODEL_LOAD):
        family.labels(stage)
    if frames:
        FRAMES.labels(stage)
    if batches:
        BATCH_SIZE.labels(stage)
        BATCH_STEP.labels(stage)
    if stage not in _GPU_MEMORY.stages:
        _GPU_MEMORY.stages.append(stage)


def start_metrics_server(host: str, port: int) -> None:
    """Serve /metrics on `host:port` from a daemon thread (port 0 disables it)."""
    if port:
        start_http_server(port, addr=host)


def _size(message: Message | bytes) -> int:
    return len(message) if isinstance(message, bytes) else message.ByteSize()


def _counted(messages: Iterable[Any], count: Callable[[Any], None]) -> Iterator[Any]:
    for message in messages:
        count(message)
        yield message


class MetricsInterceptor(ApplicationInterceptor):
    """Counts, times and sizes every application call of one stage (health and reflection aside),
    and counts the frames of its frame-carrying method."""

    def __init__(self, stage: str, frames: FrameCount | None = None) -> None:
        """Label every series with `stage`; count frames as `frames` says."""
        self._stage = stage
        self._frames = frames

    def _finish(
        self, method: str, context: grpc.ServicerContext, started: float, outcome: grpc.StatusCode
    ) -> None:
        code = context.code() or outcome
        REQUESTS.labels(self._stage, method, code.name).inc()
        DURATION.labels(self._stage, method).observe(time.perf_counter() - started)
        IN_FLIGHT.labels(self._stage).dec()

    def _counter(
        self, bytes_counter: Counter, frames_in: Callable[[Any], int] | None
    ) -> Callable[[Any], None]:
        """What to do with each message: add its size, and its frames when the method carries them."""
        sized, frames = bytes_counter.labels(self._stage), FRAMES.labels(self._stage)

        def count(message: Any) -> None:
            sized.inc(_size(message))
            if frames_in is not None:
                frames.inc(frames_in(message))

        return count

    def wrap(self, behavior: Callable[..., Any], streaming: bool, method: str) -> Callable[..., Any]:
        """Count, time and size the call."""
        carries = self._frames if self._frames is not None and self._frames.method == method else None
        receive = self._counter(RECEIVED_BYTES, carries.in_request if carries else None)
        send = self._counter(SENT_BYTES, carries.in_response if carries else None)

        def count_request(request: Any) -> Any:
            if isinstance(request, (Message, bytes)):
                receive(request)
                return request
            return _counted(request, receive)

        if streaming:

            def stream_behavior(request, context):
                IN_FLIGHT.labels(self._stage).inc()
                started, outcome = time.perf_counter(), grpc.StatusCode.INTERNAL
                try:
                    yield from _counted(behavior(count_request(request), context), send)
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
                send(response)
                outcome = grpc.StatusCode.OK
                return response
            finally:
                self._finish(method, context, started, outcome)

        return unary_behavior
