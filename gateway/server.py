"""The gateway process: SongService over the job manager, with the stages in-process or remote."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from gateway.auth import Authenticator, BearerAuthInterceptor, anonymous, read_tokens
from gateway.jobs import JobManager, JobSettings
from gateway.local_stages import LocalStages, ModelPaths
from gateway.pipeline import Pipeline, RetryPolicy
from gateway.remote_stages import RemoteStages, StageTargets
from gateway.results import FolderResults
from gateway.servicer import SongServicer
from gateway.stages import Stages
from gateway.stores import open_job_store
from services.runtime.channels import ChannelSecurity
from services.runtime.config import ServerConfig, load_config, option
from services.runtime.server import ModelSlot, StageSpec, serve
from songsmith.v1 import song_pb2, song_pb2_grpc

SERVICE_NAME = song_pb2.DESCRIPTOR.services_by_name["SongService"].full_name


@dataclass
class GatewayConfig(ServerConfig):
    """Settings of the gateway (flags, or SONGSMITH_* environment variables)."""

    port: int = option(50050, "gRPC port of SongService")
    metrics_port: int = option(9400, "Prometheus metrics port; 0 disables the metrics endpoint")
    max_concurrent: int = option(64, "SongService calls at once (streams included)")
    max_queue: int = option(64, "SongService calls allowed to wait for a slot")
    tokenizer_target: str = option("", "gRPC target of the tokenizer stage; empty: run it in-process")
    style_target: str = option("", "gRPC target of the style stage; empty: run it in-process")
    diffusion_target: str = option("", "gRPC target of the diffusion stage; empty: run it in-process")
    vocoder_target: str = option("", "gRPC target of the vocoder stage; empty: run it in-process")
    stage_tls_ca: str = option("", "PEM CA that signed the stages' certificates (TLS to the stages)")
    stage_tls_cert: str = option("", "PEM client certificate presented to the stages (mTLS)")
    stage_tls_key: str = option("", "PEM private key of the client certificate")
    model_root: str = option("models", "model folder for in-process stages (diffrhythm2/, muq-mulan/)")
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
    diffusion_retries: int = option(8, "attempts to resume a song when the diffusion stage is lost")
    job_lease_s: float = option(15.0, "a gateway that stops renewing its jobs' leases loses them after this")
    job_poll_s: float = option(0.5, "how often to look for queued jobs, cancellations and events unprompted")
    job_retention_s: float = option(
        7 * 24 * 3600.0, "finished jobs and their songs are removed this long after they end; 0 keeps them"
    )

    def remote(self) -> bool:
        """True when every stage is reached over gRPC; False when all run in this process."""
        targets = [self.tokenizer_target, self.style_target, self.diffusion_target, self.vocoder_target]
        if any(targets) and not all(targets):
            raise SystemExit("songsmith: error: set all four stage targets, or none to run them in-process")
        return all(targets)


def build_stages(config: GatewayConfig) -> Stages:
    """The stages the pipeline drives: gRPC clients when targets are set, engines otherwise."""
    if config.remote():
        targets = StageTargets(
            config.tokenizer_target, config.style_target, config.diffusion_target, config.vocoder_target
        )
        security = ChannelSecurity(config.stage_tls_ca, config.stage_tls_cert, config.stage_tls_key)
        return RemoteStages(targets, security)
    return LocalStages(ModelPaths.under(config.model_root), config.device)


def build_job_manager(config: GatewayConfig) -> JobManager:
    """The job manager with its store, results folder and pipeline; resumes unfinished jobs."""
    pipeline = Pipeline(build_stages(config), RetryPolicy(attempts=config.diffusion_retries))
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
    config.remote()
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
    )


def main(argv: list[str] | None = None) -> None:
    """`songsmith serve gateway`: run until SIGTERM, then drain."""
    config = load_config(GatewayConfig, argv, prog="songsmith serve gateway")
    serve(config, build_spec(config))
