"""The generation stage's server: its configuration and how the runtime loads and registers it."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import torch

from services.diffusion.engine import GenerationEngine, GenerationSettings
from services.diffusion.families import GENERATION_FAMILIES
from services.diffusion.servicer import DiffusionServicer
from services.runtime.config import ServerConfig, load_config, option
from services.runtime.metrics import FrameCount
from services.runtime.server import StageSpec, serve
from services.runtime.slot import ModelSlot
from songsmith.v1 import diffusion_pb2, diffusion_pb2_grpc

SERVICE_NAME = diffusion_pb2.DESCRIPTOR.services_by_name["DiffusionService"].full_name


@dataclass
class DiffusionConfig(ServerConfig):
    """Settings of the generation stage (flags, or SONGSMITH_* environment variables)."""

    port: int = option(50053, "gRPC port")
    metrics_port: int = option(9403, "Prometheus metrics port; 0 disables the metrics endpoint")
    max_concurrent: int = option(16, "songs in the stage at once: the batch and those waiting to join it")
    max_batch: int = option(8, "songs sampled together, one batched forward per step (continuous batching)")
    model_dir: str = option(
        "models/diffrhythm2",
        "the model folder; its files say which family it is (see `songsmith models list`)",
    )
    family: str = option("", "the model family, when detection from the folder's files is not wanted")
    model_name: str = option(
        "", "the name to serve the model under; empty: the manifest's, else the folder's"
    )
    device: str = option("cpu", "torch device to run on (cpu, cuda, cuda:1, ...)")
    dtype: str = option("float32", "precision: float32 (the only choice on CPU), float16 or bfloat16")
    max_frames_cap: int = option(0, "longest song a request may ask for, in frames; 0: the family's default")
    threads: int = option(0, "torch CPU threads; 0 keeps torch's default")


def build_spec(config: DiffusionConfig) -> StageSpec:
    """The StageSpec that loads (and warms up) the engine and registers the servicer."""

    def load() -> GenerationEngine:
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        settings = GenerationSettings(
            config.device,
            config.dtype,
            config.max_frames_cap,
            config.model_name,
            config.max_batch,
            config.max_queue,
            config.retry_after_s,
        )
        engine = GENERATION_FAMILIES.load(config.model_dir, settings, config.family)
        engine.warm_up()
        return engine

    def register(server: grpc.Server, slot: ModelSlot) -> None:
        diffusion_pb2_grpc.add_DiffusionServiceServicer_to_server(DiffusionServicer(slot), server)

    return StageSpec(
        name="diffusion",
        service_name=SERVICE_NAME,
        load=load,
        register=register,
        frames=FrameCount(f"/{SERVICE_NAME}/GenerateLatents", in_response=block_frames),
        batches=True,
    )


def block_frames(response: diffusion_pb2.GenerateLatentsResponse) -> int:
    """Frames of the block a GenerateLatents response carries (0 for a progress message)."""
    return response.block.frames.shape[0] if response.HasField("block") and response.block.frames.shape else 0


def main(argv: list[str] | None = None) -> None:
    """`songsmith serve diffusion [flags]`: serve until SIGTERM, then drain."""
    config = load_config(DiffusionConfig, argv, prog="songsmith serve diffusion")
    serve(config, build_spec(config))
