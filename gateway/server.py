"""The gateway process: SongService over the job manager, routing each model's songs to its stages
(in process or remote)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from gateway.auth import Authenticator, BearerAuthInterceptor, anonymous, read_tokens
from gateway.jobs import JobManager, JobSettings
from gateway.models import (
    LOCAL,
    STAGES,
    ModelRoute,
    RoutesError,
    discover,
    find_chart_model,
    read_routes,
    single_model_routes,
)
from gateway.pipeline import Pipeline, RetryPolicy
from gateway.results import FolderResults
from gateway.router import Router
from gateway.servicer import SongServicer
from gateway.stores import open_job_store
from services.runtime.channels import ChannelSecurity
from services.runtime.config import ServerConfig, load_config, option
from services.runtime.server import StageSpec, serve
from services.runtime.slot import ModelSlot
from songsmith.v1 import song_pb2, song_pb2_grpc

SERVICE_NAME = song_pb2.DESCRIPTOR.services_by_name["SongService"].full_name
# Short calls, admitted apart from the song streams (Generate, WatchJob) so open streams never starve them.
CONTROL_METHODS = frozenset(
    f"/{SERVICE_NAME}/{method}"
    for method in ("SubmitJob", "GetJob", "ListJobs", "CancelJob", "DeleteJob", "ListModels")
)


@dataclass
class GatewayConfig(ServerConfig):
    """Settings of the gateway (flags, or SONGSMITH_* environment variables)."""

    port: int = option(50050, "gRPC port of SongService")
    metrics_port: int = option(9400, "Prometheus metrics port; 0 disables the metrics endpoint")
    max_concurrent: int = option(64, "song streams (Generate, WatchJob) open at once")
    max_queue: int = option(64, "song streams allowed to wait for a slot; past that, RESOURCE_EXHAUSTED")
    control_max_concurrent: int = option(
        16,
        "job calls (SubmitJob, GetJob, ListJobs, CancelJob, DeleteJob, ListModels) at once, besides streams",
    )
    control_max_queue: int = option(64, "job calls allowed to wait; past that, RESOURCE_EXHAUSTED")
    models: str = option(
        "",
        "the routed models: a YAML file, or its text (model name -> stage -> gRPC target or local:PATH; "
        "the first is the default). Empty: the four *_target options, else every model under model_root",
    )
    model_name: str = option("diffrhythm2", "the name of the one model the four *_target options route to")
    tokenizer_target: str = option("", "gRPC target of the tokenizer stage (one-model routing)")
    style_target: str = option("", "gRPC target of the style stage (one-model routing)")
    diffusion_target: str = option("", "gRPC target of the diffusion stage (one-model routing)")
    vocoder_target: str = option("", "gRPC target of the vocoder stage (one-model routing)")
    chart_target: str = option(
        "",
        "the chart stage, for the songs of every model that ask for charts: a gRPC target, or local:PATH "
        "(a chart model folder in process). Empty: a chart model folder under model_root when the models "
        "are found there too, else none (songs asking for charts are FAILED_PRECONDITION)",
    )
    stage_tls_ca: str = option("", "PEM CA that signed the stages' certificates (TLS to the stages)")
    stage_tls_cert: str = option("", "PEM client certificate presented to the stages (mTLS)")
    stage_tls_key: str = option("", "PEM private key of the client certificate")
    model_root: str = option("models", "folder of model folders served in process when nothing is routed")
    device: str = option("cpu", "torch device for in-process stages")
    auth_tokens_file: str = option(
        "", "file of accepted bearer tokens, one per line (`TOKEN [name=ID] [role=admin]`); empty: no auth"
    )
    jobs_db: str = option(
        "var/jobs.sqlite3", "the jobs database: a SQLite file (one gateway) or a postgresql:// URL (several)"
    )
    jobs_db_retry_s: float = option(30.0, "how long a jobs database call retries a lost connection")
    jobs_db_pool: int = option(8, "PostgreSQL connections per gateway")
    results_dir: str = option("var/results", "folder of finished songs (shared by every gateway)")
    max_running_jobs: int = option(1, "songs generated at once")
    max_queued_jobs: int = option(64, "songs allowed to wait; past that, RESOURCE_EXHAUSTED")
    job_timeout_s: float = option(3600.0, "longest a song may take, queueing included")
    resume_budget_s: float = option(
        300.0,
        "how long a song keeps trying to resume when its generation stage is lost (longer than a cold "
        "stage start with its model load)",
    )
    job_lease_s: float = option(15.0, "a gateway that stops renewing its jobs' leases loses them after this")
    job_poll_s: float = option(0.5, "how often to look for queued jobs, cancellations and events unprompted")
    job_retention_s: float = option(
        7 * 24 * 3600.0, "finished jobs and their songs are removed this long after they end; 0 keeps them"
    )

    def routes(self) -> list[ModelRoute]:
        """The routed models: `models`, else the four targets, else the model folders under model_root.
        Exits with a one-line error for a configuration that cannot be used."""
        targets = {stage: getattr(self, f"{stage}_target") for stage in STAGES}
        try:
            if self.models:
                return read_routes(self.models)
        except RoutesError as exc:
            raise SystemExit(f"songsmith: error: {exc}") from exc
        if any(targets.values()) and not all(targets.values()):
            raise SystemExit("songsmith: error: set all four stage targets, or use --models")
        if all(targets.values()):
            return single_model_routes(self.model_name, targets)
        return discover(Path(self.model_root))

    def chart(self) -> str:
        """The chart stage's target: `chart_target`, else (when the models are found under model_root)
        `local:` the chart model folder there, else "" (no chart stage)."""
        if self.chart_target or self.models or any(getattr(self, f"{stage}_target") for stage in STAGES):
            return self.chart_target
        folder = find_chart_model(Path(self.model_root))
        return f"{LOCAL}:{folder}" if folder is not None else ""


def build_job_manager(config: GatewayConfig) -> JobManager:
    """The job manager with its store, results folder and a pipeline over the routed models;
    starts it (a store only this gateway uses gets its unfinished jobs back in the queue)."""
    security = ChannelSecurity(config.stage_tls_ca, config.stage_tls_cert, config.stage_tls_key)
    router = Router(config.routes(), security, config.device, config.chart())
    pipeline = Pipeline(router, RetryPolicy(budget_s=config.resume_budget_s))
    settings = JobSettings(
        config.max_running_jobs,
        config.max_queued_jobs,
        config.job_timeout_s,
        lease_s=config.job_lease_s,
        poll_s=config.job_poll_s,
        retention_s=config.job_retention_s,
    )
    store = open_job_store(config.jobs_db, retry_s=config.jobs_db_retry_s, pool_size=config.jobs_db_pool)
    manager = JobManager(store, pipeline, FolderResults(config.results_dir), settings)
    manager.start()
    return manager


def build_spec(config: GatewayConfig) -> StageSpec:
    """The gateway as a served component: SongService, bearer auth when tokens are configured."""
    if config.models or any(getattr(config, f"{stage}_target") for stage in STAGES):
        config.routes()  # a routing mistake stops the gateway at once; a missing model folder does not
    interceptors: list[grpc.ServerInterceptor] = []
    identify = anonymous
    if config.auth_tokens_file:
        authenticator = Authenticator(read_tokens(config.auth_tokens_file))
        interceptors.append(BearerAuthInterceptor(authenticator))
        identify = authenticator.caller_of

    def register(server: grpc.Server, slot: ModelSlot) -> None:
        song_pb2_grpc.add_SongServiceServicer_to_server(SongServicer(slot, identify), server)

    return StageSpec(
        name="gateway",
        service_name=SERVICE_NAME,
        load=lambda: build_job_manager(config),
        register=register,
        interceptors=interceptors,
        close=JobManager.close,
        serves_model_info=False,
        control_methods=CONTROL_METHODS,
        watch_health=JobManager.watch_health,
    )


def main(argv: list[str] | None = None) -> None:
    """`songsmith serve gateway`: run until SIGTERM, then drain."""
    config = load_config(GatewayConfig, argv, prog="songsmith serve gateway")
    serve(config, build_spec(config))
