"""Bootstrap of a stage's gRPC server: limits, health, reflection, interceptors, graceful drain.

A stage describes itself with a `StageSpec` (how to load its engine, how to register its servicer).
`StageServer` opens the port first with health NOT_SERVING, loads the engine, then reports SERVING;
on SIGTERM it reports NOT_SERVING again, lets in-flight calls finish within the grace period, and
stops. A missing model leaves the server up and answering FAILED_PRECONDITION, so the cause is
visible to callers and probes rather than hidden in a crash loop.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.runtime.admission import AdmissionController, AdmissionInterceptor
from services.runtime.config import ServerConfig
from services.runtime.errors import FailedPreconditionError, ServiceError
from services.runtime.interceptor import ErrorInterceptor
from services.runtime.logs import setup_logging
from services.runtime.metrics import (
    MODEL_LOAD,
    FrameCount,
    MetricsInterceptor,
    prepare_stage,
    service_methods,
    start_metrics_server,
)
from services.runtime.model_service import SERVICE_NAME as MODEL_INFO_SERVICE
from services.runtime.model_service import ModelInfoServicer
from services.runtime.reflection import enable_reflection
from services.runtime.slot import ModelSlot
from services.runtime.tracing import TracingServerInterceptor, setup_tracing, shutdown_tracing
from songsmith.v1 import model_pb2_grpc

log = logging.getLogger(__name__)
MODEL_INFO_METHOD = f"/{MODEL_INFO_SERVICE}/GetModelInfo"

# Threads kept free of admission control for health checks, reflection and refusals.
_SPARE_WORKERS = 8
# Calls that may wait for a spare thread beyond every admission budget (a burst): each is soon
# answered, a health check with its status and any other call with our refusal and its retry delay.
# Only past this many does gRPC refuse calls itself (RESOURCE_EXHAUSTED without a retry delay).
REFUSAL_BACKLOG = 1024


@dataclass
class StageSpec:
    """What the runtime needs to know to serve one stage.

    `interceptors` run inside the error interceptor (so their typed errors become statuses) and
    before admission control (the gateway's authentication, for example). `close`, when given, is
    called with the loaded engine after the server has drained. A model stage also serves
    ModelInfoService from its engine's `info` (`serves_model_info`; the gateway hosts no model).
    `frames` says where the frames the stage makes or decodes travel (`songsmith_frames_total`);
    `batches` marks a stage that batches songs (`songsmith_batch_size` exists from start-up).
    `control_methods` (full names) are admitted on the control budget, as GetModelInfo is; every
    other call on the work budget. `watch_health`, when given, is called with the loaded engine and
    a function that sets the server's health (True: SERVING, False: NOT_SERVING), for an engine
    whose own dependencies (the gateway's job store) can become unusable and usable again.
    """

    name: str
    service_name: str
    load: Callable[[], Any]
    register: Callable[[grpc.Server, ModelSlot], None]
    interceptors: list[grpc.ServerInterceptor] = field(default_factory=list)
    close: Callable[[Any], None] | None = None
    serves_model_info: bool = True
    frames: FrameCount | None = None
    batches: bool = False
    control_methods: frozenset[str] = frozenset()
    watch_health: Callable[[Any, Callable[[bool], None]], None] | None = None


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS credentials when a certificate is configured; client certificates required with a CA."""
    if not config.tls_cert:
        return None
    client_ca = _read(config.tls_client_ca) if config.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(_read(config.tls_key), _read(config.tls_cert))],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def server_options(config: ServerConfig) -> list[tuple[str, int]]:
    """Channel arguments: message limits, keepalive and connection age (so clients re-resolve)."""
    return [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.keepalive_time_ms", int(config.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(config.keepalive_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
        ("grpc.max_connection_age_ms", int(config.max_connection_age_s * 1000)),
        ("grpc.max_connection_age_grace_ms", int(config.max_connection_age_grace_s * 1000)),
        ("grpc.so_reuseport", 0),
    ]


class StageServer:
    """One stage's gRPC server: start, load the engine, serve, drain."""

    def __init__(self, config: ServerConfig, spec: StageSpec) -> None:
        """Build the server for `spec` with `config`; nothing listens until `start`."""
        self.config = config
        self.spec = spec
        self.slot = ModelSlot()
        self.health = health.HealthServicer(experimental_non_blocking=True)
        self.port = 0
        self.stopped = threading.Event()
        setup_tracing(f"songsmith-{spec.name}")
        workers = (
            config.max_concurrent
            + config.max_queue
            + config.control_max_concurrent
            + config.control_max_queue
            + _SPARE_WORKERS
        )
        work = AdmissionController(spec.name, config.max_concurrent, config.max_queue, config.retry_after_s)
        control = AdmissionController(
            f"{spec.name} control calls",
            config.control_max_concurrent,
            config.control_max_queue,
            config.retry_after_s,
        )
        control_methods = spec.control_methods | ({MODEL_INFO_METHOD} if spec.serves_model_info else set())
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{spec.name}-rpc"),
            interceptors=[
                TracingServerInterceptor(),
                MetricsInterceptor(spec.name, spec.frames),
                ErrorInterceptor(spec.name),
                *spec.interceptors,
                AdmissionInterceptor(work, control, frozenset(control_methods)),
            ],
            options=server_options(config),
            maximum_concurrent_rpcs=workers + REFUSAL_BACKLOG,
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        spec.register(self._server, self.slot)
        application = [spec.service_name]
        if spec.serves_model_info:
            model_pb2_grpc.add_ModelInfoServiceServicer_to_server(ModelInfoServicer(self.slot), self._server)
            application.append(MODEL_INFO_SERVICE)
        enable_reflection([*application, health.SERVICE_NAME], self._server)
        methods = [method for service in application for method in service_methods(service)]
        prepare_stage(spec.name, methods, frames=spec.frames is not None, batches=spec.batches)
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)

    def _set_health(self, status: int) -> None:
        self.health.set("", status)
        self.health.set(self.spec.service_name, status)

    def start(self) -> int:
        """Listen (health NOT_SERVING) and return the bound port."""
        credentials = server_credentials(self.config)
        if credentials is None:
            self.port = self._server.add_insecure_port(self.config.address)
        else:
            self.port = self._server.add_secure_port(self.config.address, credentials)
        if self.port == 0:
            raise OSError(f"could not bind {self.config.address}")
        self._server.start()
        log.info("%s listening on %s:%d", self.spec.name, self.config.host, self.port)
        return self.port

    def load(self) -> bool:
        """Load the engine; SERVING on success. On failure, calls get the reason; returns False."""
        started = time.perf_counter()
        try:
            engine = self.spec.load()
        except ServiceError as exc:
            log.error("%s could not load its model: %s", self.spec.name, exc.message)
            if not isinstance(exc, FailedPreconditionError):
                exc = FailedPreconditionError(exc.message)
            self.slot.fail(exc)
            return False
        except Exception as exc:
            log.exception("%s could not load its model", self.spec.name)
            self.slot.fail(FailedPreconditionError(f"model failed to load: {type(exc).__name__}: {exc}"))
            return False
        took = time.perf_counter() - started
        MODEL_LOAD.labels(self.spec.name).set(took)
        self.slot.fill(engine)
        self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info("%s is serving (loaded in %.1f s)", self.spec.name, took)
        if self.spec.watch_health is not None:
            self.spec.watch_health(engine, self._report_usable)
        return True

    def _report_usable(self, usable: bool) -> None:
        """The engine says whether it can do its work (ignored once draining)."""
        serving = (
            health_pb2.HealthCheckResponse.SERVING if usable else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        log.log(
            logging.INFO if usable else logging.WARNING,
            "%s is %s",
            self.spec.name,
            "serving" if usable else "not serving",
        )
        self._set_health(serving)

    def stop(self, grace: float | None = None) -> None:
        """Drain: report NOT_SERVING (still accepting calls for `drain_delay_s`, so load balancers
        and probes see it), then refuse new calls and let in-flight ones finish within `grace` s."""
        grace = self.config.shutdown_grace_s if grace is None else grace
        self.health.enter_graceful_shutdown()
        log.info("%s draining (grace %.0f s)", self.spec.name, grace)
        time.sleep(self.config.drain_delay_s)
        self._server.stop(grace).wait()
        if self.spec.close is not None and self.slot.loaded:
            self.spec.close(self.slot.get())
        self.stopped.set()
        log.info("%s stopped", self.spec.name)


def serve(config: ServerConfig, spec: StageSpec) -> None:
    """Run `spec` until SIGTERM or SIGINT, then drain and exit: the entry point of `songsmith serve`."""
    setup_logging(spec.name, config.log_level, config.log_format)
    stop_requested = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop_requested.set())
    start_metrics_server(config.host, config.metrics_port)
    server = StageServer(config, spec)
    server.start()
    loader = threading.Thread(target=server.load, name=f"{spec.name}-load", daemon=True)
    loader.start()
    while not stop_requested.wait(1.0):
        pass
    server.stop()
    shutdown_tracing()
