"""The diffusion stage's server: its configuration and how the runtime loads and registers it."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import torch

from services.diffusion.diffrhythm2.engine import DEFAULT_MAX_FRAMES_CAP, DiffusionEngine
from services.diffusion.servicer import DiffusionServicer
from services.runtime.config import ServerConfig, load_config, option
from services.runtime.server import ModelSlot, StageSpec, serve
from songsmith.v1 import diffusion_pb2_grpc

SERVICE_NAME = "songsmith.v1.Diffusion"


@dataclass
class DiffusionConfig(ServerConfig):
    """Settings of the diffusion stage (flags, or SONGSMITH_* environment variables)."""

    port: int = option(50053, "gRPC port")
    metrics_port: int = option(9403, "Prometheus metrics port; 0 disables the metrics endpoint")
    max_concurrent: int = option(2, "songs sampled at once; sampling is compute-bound, so keep this small")
    model_dir: str = option(
        "models/diffrhythm2", "directory holding model.safetensors and config.json (or model.json)"
    )
    device: str = option("cpu", "torch device to run on (cpu, cuda, cuda:1, ...)")
    dtype: str = option("float32", "DiT precision: float32 (the only choice on CPU), float16 or bfloat16")
    max_frames_cap: int = option(
        DEFAULT_MAX_FRAMES_CAP, "longest song a request may ask for, in latent frames (5 per second)"
    )
    threads: int = option(0, "torch CPU threads; 0 keeps torch's default")


def build_spec(config: DiffusionConfig) -> StageSpec:
    """The StageSpec that loads (and warms up) the engine and registers the Diffusion servicer."""

    def load() -> DiffusionEngine:
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        engine = DiffusionEngine.load(config.model_dir, config.device, config.dtype, config.max_frames_cap)
        engine.warm_up()
        return engine

    def register(server: grpc.Server, slot: ModelSlot) -> None:
        diffusion_pb2_grpc.add_DiffusionServicer_to_server(DiffusionServicer(slot), server)

    return StageSpec(name="diffusion", service_name=SERVICE_NAME, load=load, register=register)


def main(argv: list[str] | None = None) -> None:
    """`songsmith serve diffusion [flags]`: serve until SIGTERM, then drain."""
    config = load_config(DiffusionConfig, argv, prog="songsmith serve diffusion")
    serve(config, build_spec(config))
