"""The chart stage's server: its configuration and how the runtime loads and registers it."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import torch

from services.chart.engine import ChartEngine, ChartSettings
from services.chart.families import CHART_FAMILIES
from services.chart.servicer import ChartServicer
from services.runtime.config import MIB, ServerConfig, load_config, option
from services.runtime.server import StageSpec, serve
from services.runtime.slot import ModelSlot
from songsmith.v1 import chart_pb2_grpc

SERVICE_NAME = "songsmith.v1.ChartService"


@dataclass
class ChartConfig(ServerConfig):
    """Settings of the chart stage (flags, or SONGSMITH_* environment variables)."""

    port: int = option(50055, "gRPC port")
    metrics_port: int = option(9405, "Prometheus metrics port; 0 disables the metrics endpoint")
    max_concurrent: int = option(
        1, "requests run at once; sampling is compute-bound, batch charts with count"
    )
    model_dir: str = option("models/mug", "Mug-Diffusion folder: model.ckpt, model.yaml and the feature list")
    family: str = option("", "model family; empty: detected from the model folder")
    model_name: str = option("", "name to serve the model under; empty: the manifest's, else the folder's")
    device: str = option("cpu", "torch device to run on (cpu, cuda, cuda:1, ...)")
    threads: int = option(0, "torch CPU threads; 0 keeps torch's default")
    max_audio_seconds: float = option(600.0, "longest song accepted, in seconds")
    max_audio_bytes: int = option(
        128 * MIB,
        "largest song accepted as sent (encoded file or PCM), in bytes; the default takes the gateway's "
        "longest song (600 s) as 48 kHz stereo 16-bit WAV",
    )
    max_count: int = option(8, "most charts one request may ask for")
    warm_up: bool = option(True, "make one tiny chart before reporting SERVING")


def build_spec(config: ChartConfig) -> StageSpec:
    """The StageSpec that loads (and warms up) the chart engine and registers the ChartService."""
    settings = ChartSettings(
        device=config.device,
        name=config.model_name,
        max_audio_seconds=config.max_audio_seconds,
        max_count=config.max_count,
    )

    def load() -> ChartEngine:
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        engine = CHART_FAMILIES.load(config.model_dir, settings, config.family)
        if config.warm_up:
            engine.warm_up()
        return engine

    def register(server: grpc.Server, slot: ModelSlot) -> None:
        chart_pb2_grpc.add_ChartServiceServicer_to_server(ChartServicer(slot, config.max_audio_bytes), server)

    return StageSpec(name="chart", service_name=SERVICE_NAME, load=load, register=register)


def main(argv: list[str] | None = None) -> None:
    """`songsmith serve chart [flags]`: serve until SIGTERM, then drain."""
    config = load_config(ChartConfig, argv, prog="songsmith serve chart")
    serve(config, build_spec(config))
