"""OpenTelemetry tracing: one trace per song across every service, exported over OTLP.

W3C trace context travels in gRPC metadata (the instrumentation's client interceptor injects it,
the server interceptor extracts it). The exporter is configured by the standard `OTEL_*` variables;
without an OTLP endpoint spans are still created (logs carry their ids) but not exported.
"""

from __future__ import annotations

import os

import grpc
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.grpc import client_interceptor, server_interceptor
from opentelemetry.instrumentation.grpc.filters import any_of, negate, service_prefix
from opentelemetry.instrumentation.grpc.grpcext import intercept_channel
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_NOT_TRACED = negate(any_of(service_prefix("grpc.health."), service_prefix("grpc.reflection.")))


def _exporting() -> bool:
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return any(os.environ.get(name) for name in _ENDPOINT_VARIABLES)


def setup_tracing(default_service_name: str) -> trace.TracerProvider:
    """Install the process's tracer provider once, exporting over OTLP when an endpoint is set.

    The service name comes from `OTEL_SERVICE_NAME` when set, else `default_service_name`.
    """
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
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()


def tracing_server_interceptor() -> grpc.ServerInterceptor:
    """Server spans for application calls, continuing the caller's trace."""
    return server_interceptor(tracer_provider=trace.get_tracer_provider(), filter_=_NOT_TRACED)


def traced_channel(
    channel: grpc.Channel, tracer_provider: trace.TracerProvider | None = None
) -> grpc.Channel:
    """`channel` with client spans and W3C context injected into every call's metadata."""
    provider = tracer_provider or trace.get_tracer_provider()
    return intercept_channel(channel, client_interceptor(tracer_provider=provider, filter_=_NOT_TRACED))
