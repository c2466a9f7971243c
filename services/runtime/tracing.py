"""OpenTelemetry tracing: one trace per song across every service, exported over OTLP.

W3C trace context travels in gRPC metadata: our client interceptor injects it (unlike the
instrumentation's own, it hands back the real call object, so streaming calls stay cancellable) and
the instrumentation's server interceptor extracts it. The exporter is configured by the standard
`OTEL_*` variables; without an OTLP endpoint, spans are still created (logs carry their ids) but not
exported.
"""

from __future__ import annotations

import os

import grpc
from opentelemetry import propagate, trace

_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


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


def tracing_server_interceptor() -> grpc.ServerInterceptor:
    """Server spans for application calls, continuing the caller's trace."""
    from opentelemetry.instrumentation.grpc import server_interceptor
    from opentelemetry.instrumentation.grpc.filters import any_of, negate, service_prefix

    not_traced = negate(any_of(service_prefix("grpc.health."), service_prefix("grpc.reflection.")))
    return server_interceptor(tracer_provider=trace.get_tracer_provider(), filter_=not_traced)


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
    """A client span per call, ended when the call finishes, with W3C context in its metadata."""

    def __init__(self, tracer_provider: trace.TracerProvider) -> None:
        """Spans come from `tracer_provider`."""
        self._tracer = tracer_provider.get_tracer(__name__)

    def _intercept(self, continuation, details: grpc.ClientCallDetails, request):
        method = details.method
        service, _, name = method.lstrip("/").rpartition("/")
        span = self._tracer.start_span(
            method,
            kind=trace.SpanKind.CLIENT,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        metadata = [*(details.metadata or ()), *carrier.items()]
        call = continuation(_CallDetails(details, metadata), request)

        def finish(done: grpc.Future) -> None:
            code = done.code()
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            if code != grpc.StatusCode.OK:
                span.set_status(trace.Status(trace.StatusCode.ERROR, f"{code.name}: {done.details()}"))
            span.end()

        call.add_done_callback(finish)
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
    channel: grpc.Channel, tracer_provider: trace.TracerProvider | None = None
) -> grpc.Channel:
    """`channel` with a client span per call and W3C context injected into every call's metadata."""
    provider = tracer_provider or trace.get_tracer_provider()
    return grpc.intercept_channel(channel, TracingClientInterceptor(provider))
