"""OpenTelemetry tracing: one trace per song across every service, exported over OTLP.

W3C trace context travels in gRPC metadata. Our client interceptor starts a CLIENT span per call and
injects its context (unlike the instrumentation package's, it hands back the real call object, so
streaming calls stay cancellable); our server interceptor extracts it and runs the handler inside a
SERVER span, so whatever the handler does (log lines, calls to other stages) belongs to the caller's
trace. Both follow OpenTelemetry's RPC conventions as the pinned semantic-conventions package states
them: the span is named after the fully-qualified method (`songsmith.v1.SongService/Generate`), with
`rpc.system.name`, `rpc.method`, `rpc.response.status_code`, `server.address`/`server.port` and the
peer's `network.peer.address`/`network.peer.port`; a failed call sets `error.type` and an ERROR
status (a server only for the codes that are its own fault).

Work that moves to another thread takes the caller's context with it (`carry_context`). The exporter
is configured by the standard `OTEL_*` variables; without an OTLP endpoint, spans are still created
(logs carry their ids) but not exported.
"""

from __future__ import annotations

import contextvars
import os
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import unquote

import grpc
from opentelemetry import context, propagate, trace
from opentelemetry.semconv._incubating.attributes.rpc_attributes import (
    RPC_METHOD,
    RPC_RESPONSE_STATUS_CODE,
    RPC_SYSTEM_NAME,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.network_attributes import NETWORK_PEER_ADDRESS, NETWORK_PEER_PORT
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT

from services.runtime.handlers import ApplicationInterceptor

_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
TRACER_NAME = "songsmith"
# The codes a server reports as its own failure; the others (bad input, not found, cancelled by the
# caller...) leave a server span's status unset, as the RPC conventions say.
SERVER_FAULTS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
T = TypeVar("T")


def _exporting() -> bool:
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return any(os.environ.get(name) for name in _ENDPOINT_VARIABLES)


def setup_tracing(default_service_name: str) -> trace.TracerProvider:
    """Install the process's tracer provider once, exporting over OTLP when an endpoint is set.

    The service name comes from `OTEL_SERVICE_NAME` when set, else `default_service_name`. The SDK
    and the exporter are imported here, not at import time: a client (the CLI) needs only the API.
    """
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    name = os.environ.get("OTEL_SERVICE_NAME") or default_service_name
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    if _exporting():
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return trace.get_tracer_provider()


def shutdown_tracing() -> None:
    """Flush and stop exporting (called once at process exit)."""
    from opentelemetry.sdk.trace import TracerProvider

    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()


def tracer() -> trace.Tracer:
    """The project's tracer, from the process's provider."""
    return trace.get_tracer(TRACER_NAME)


def carry_context(work: Callable[..., T]) -> Callable[..., T]:
    """`work`, to run once on another thread inside the caller's context: its current span (so its
    calls and spans join the caller's trace) and the log fields that live in context variables (the
    job id). OpenTelemetry keeps its context in a context variable, so a copy of the caller's carries
    it."""
    captured = contextvars.copy_context()

    def run(*args: Any, **kwargs: Any) -> T:
        return captured.run(work, *args, **kwargs)

    return run


def rpc_span_name(method: str) -> str:
    """The span name and `rpc.method` of a call: `/pkg.Service/Method` -> `pkg.Service/Method`."""
    return method.lstrip("/")


def _host_port(text: str) -> tuple[str, int | None]:
    """`host:port` (IPv6 in brackets, or a gRPC peer such as `ipv4:1.2.3.4:5`) as (host, port)."""
    found = re.fullmatch(r"(?:ipv[46]:|dns:/*)?\[?(.*?)\]?:(\d+)", unquote(text))
    if found is None:
        return text, None
    return found.group(1), int(found.group(2))


def _end(span: trace.Span, code: grpc.StatusCode, details: str, faults: frozenset | None) -> None:
    """Record the call's status on its span and end it; an error status for every failure
    (`faults` None: a client) or for the server's own faults."""
    span.set_attribute(RPC_RESPONSE_STATUS_CODE, code.name)
    if code != grpc.StatusCode.OK:
        span.set_attribute(ERROR_TYPE, code.name)
        if faults is None or code in faults:
            span.set_status(trace.Status(trace.StatusCode.ERROR, f"{code.name}: {details}"))
    span.end()


class TracingServerInterceptor(ApplicationInterceptor):
    """A SERVER span per application call, child of the caller's (W3C context from the metadata), and
    current while the handler runs; health and reflection calls are not traced."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        """Spans come from `tracer_provider` (default: the process's)."""
        self._tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(TRACER_NAME)

    def _start(self, method: str, context_: grpc.ServicerContext) -> tuple[trace.Span, context.Context]:
        carrier = {key: value for key, value in context_.invocation_metadata() if isinstance(value, str)}
        parent = propagate.extract(carrier)
        name = rpc_span_name(method)
        attributes: dict[str, Any] = {RPC_SYSTEM_NAME: "grpc", RPC_METHOD: name}
        peer, port = _host_port(context_.peer())
        attributes[NETWORK_PEER_ADDRESS] = peer
        if port is not None:
            attributes[NETWORK_PEER_PORT] = port
        span = self._tracer.start_span(name, parent, trace.SpanKind.SERVER, attributes)
        return span, trace.set_span_in_context(span, parent)

    @staticmethod
    def _finish(span: trace.Span, context_: grpc.ServicerContext, outcome: grpc.StatusCode) -> None:
        code = context_.code() or outcome
        _end(span, code, context_.details() or "", SERVER_FAULTS)

    def wrap(self, behavior: Callable[..., Any], streaming: bool, method: str) -> Callable[..., Any]:
        """Run the handler inside its span; a stream's every step runs inside it."""
        if streaming:

            def stream_behavior(request, context_):
                span, current = self._start(method, context_)
                outcome = grpc.StatusCode.UNKNOWN
                responses: Iterator[Any] = iter(())
                try:
                    responses = _in_context(current, lambda: behavior(request, context_))
                    while True:
                        try:
                            response = _in_context(current, lambda: next(responses))
                        except StopIteration:
                            break
                        yield response
                    outcome = grpc.StatusCode.OK
                except GeneratorExit:
                    outcome = grpc.StatusCode.CANCELLED
                    raise
                finally:
                    close = getattr(responses, "close", None)
                    if close is not None:
                        _in_context(current, close)
                    self._finish(span, context_, outcome)

            return stream_behavior

        def unary_behavior(request, context_):
            span, current = self._start(method, context_)
            outcome = grpc.StatusCode.UNKNOWN
            try:
                response = _in_context(current, lambda: behavior(request, context_))
                outcome = grpc.StatusCode.OK
                return response
            finally:
                self._finish(span, context_, outcome)

        return unary_behavior


def _in_context(current: context.Context, step: Callable[[], T]) -> T:
    """Run `step` with `current` attached, detached again before returning (so a stream's context
    never leaks into the thread between its messages)."""
    token = context.attach(current)
    try:
        return step()
    finally:
        context.detach(token)


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, details: grpc.ClientCallDetails, metadata: list[tuple[str, str]]) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = details.wait_for_ready
        self.compression = details.compression


class TracingClientInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """A CLIENT span per call, child of the current span and ended when the call finishes, with its
    W3C context in the call's metadata."""

    def __init__(self, tracer_provider: trace.TracerProvider, target: str = "") -> None:
        """Spans come from `tracer_provider`; `target` is the channel's (its host and port become
        `server.address` and `server.port`)."""
        self._tracer = tracer_provider.get_tracer(TRACER_NAME)
        self._server: dict[str, Any] = {}
        if target:
            host, port = _host_port(target)
            self._server[SERVER_ADDRESS] = host
            if port is not None:
                self._server[SERVER_PORT] = port

    def _intercept(self, continuation, details: grpc.ClientCallDetails, request):
        name = rpc_span_name(details.method)
        attributes = {RPC_SYSTEM_NAME: "grpc", RPC_METHOD: name, **self._server}
        span = self._tracer.start_span(name, kind=trace.SpanKind.CLIENT, attributes=attributes)
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        metadata = [*(details.metadata or ()), *carrier.items()]
        call = continuation(_CallDetails(details, metadata), request)
        call.add_done_callback(lambda done: _end(span, done.code(), done.details() or "", None))
        return call

    def intercept_unary_unary(self, continuation, client_call_details, request):
        """Trace a unary call."""
        return self._intercept(continuation, client_call_details, request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        """Trace a server-streaming call."""
        return self._intercept(continuation, client_call_details, request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        """Trace a client-streaming call."""
        return self._intercept(continuation, client_call_details, request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        """Trace a bidirectional call."""
        return self._intercept(continuation, client_call_details, request_iterator)


def traced_channel(
    channel: grpc.Channel, tracer_provider: trace.TracerProvider | None = None, target: str = ""
) -> grpc.Channel:
    """`channel` (to `target`) with a client span per call and W3C context in every call's metadata."""
    provider = tracer_provider or trace.get_tracer_provider()
    return grpc.intercept_channel(channel, TracingClientInterceptor(provider, target))
