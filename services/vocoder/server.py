"""The vocoder stage's server: its configuration and how the runtime loads and registers it."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import numpy as np
import torch

from services.runtime.config import ServerConfig, load_config, option
from services.runtime.server import ModelSlot, StageSpec, serve
from services.vocoder.diffrhythm2.engine import DEFAULT_MAX_FRAMES, VocoderEngine
from services.vocoder.diffrhythm2.windows import WINDOW_FRAMES
from services.vocoder.servicer import VocoderServicer
from songsmith.v1 import vocoder_pb2_grpc

SERVICE_NAME = "songsmith.v1.Vocoder"


@dataclass
class VocoderConfig(ServerConfig):
    """Settings of the vocoder stage (flags, or SONGSMITH_* environment variables)."""

    port: int = option(50054, "gRPC port")
    metrics_port: int = option(9404, "Prometheus metrics port; 0 disables the metrics endpoint")
    max_concurrent: int = option(16, "songs streamed at once; their windows are decoded in batches")
    max_window_batch: int = option(
        0, "windows of concurrent songs decoded together in one batch; 0: 1 on CPU, 16 on CUDA"
    )
    model_dir: str = option("models/diffrhythm2", "directory holding decoder.bin and decoder.json")
    device: str = option("cpu", "torch device to run on (cpu, cuda, cuda:1, ...)")
    max_frames_cap: int = option(
        DEFAULT_MAX_FRAMES, "longest song accepted, in latent frames (5 per second; 3000 = 10 min)"
    )
    threads: int = option(0, "torch CPU threads; 0 keeps torch's default")


def warm_up(engine: VocoderEngine) -> None:
    """Decode one silent window so the first real request does not pay for kernel selection."""
    engine.decode_window(np.zeros((WINDOW_FRAMES, engine.channels), np.float32))


def build_spec(config: VocoderConfig) -> StageSpec:
    """The StageSpec that loads (and warms up) the decoder and registers the Vocoder servicer."""

    def load() -> VocoderEngine:
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        engine = VocoderEngine.load(
            config.model_dir, config.device, config.max_frames_cap, max_window_batch=config.max_window_batch
        )
        warm_up(engine)
        return engine

    def register(server: grpc.Server, slot: ModelSlot) -> None:
        vocoder_pb2_grpc.add_VocoderServicer_to_server(VocoderServicer(slot), server)

    return StageSpec(name="vocoder", service_name=SERVICE_NAME, load=load, register=register)


def main(argv: list[str] | None = None) -> None:
    """`songsmith serve vocoder [flags]`: serve until SIGTERM, then drain."""
    config = load_config(VocoderConfig, argv, prog="songsmith serve vocoder")
    serve(config, build_spec(config))
