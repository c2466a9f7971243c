"""The vocoder stage's server: its configuration and how the runtime loads and registers it."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import torch

from services.runtime.config import ServerConfig, load_config, option
from services.runtime.metrics import FrameCount
from services.runtime.server import StageSpec, serve
from services.runtime.slot import ModelSlot
from services.vocoder.engine import VocoderEngine, VocoderSettings
from services.vocoder.families import VOCODER_FAMILIES
from services.vocoder.servicer import VocoderServicer
from songsmith.v1 import vocoder_pb2, vocoder_pb2_grpc

SERVICE_NAME = vocoder_pb2.DESCRIPTOR.services_by_name["VocoderService"].full_name


@dataclass
class VocoderConfig(ServerConfig):
    """Settings of the vocoder stage (flags, or SONGSMITH_* environment variables)."""

    port: int = option(50054, "gRPC port")
    metrics_port: int = option(9404, "Prometheus metrics port; 0 disables the metrics endpoint")
    max_concurrent: int = option(16, "songs streamed at once; their windows are decoded in batches")
    max_window_batch: int = option(
        0, "windows of concurrent songs decoded together in one batch; 0: 1 on CPU, 16 on CUDA"
    )
    model_dir: str = option(
        "models/diffrhythm2", "the model folder; its files say its family (see `songsmith models list`)"
    )
    family: str = option("", "the decoder family, when detection from the folder's files is not wanted")
    model_name: str = option("", "name to serve the model under; empty: the manifest's, else the folder's")
    device: str = option("cpu", "torch device to run on (cpu, cuda, cuda:1, ...)")
    max_frames_cap: int = option(0, "longest song accepted, in frames; 0: the family's default")
    threads: int = option(0, "torch CPU threads; 0 keeps torch's default")


def build_spec(config: VocoderConfig) -> StageSpec:
    """The StageSpec that loads (and warms up) the decoder and registers the servicer."""

    def load() -> VocoderEngine:
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        settings = VocoderSettings(
            config.device, config.max_frames_cap, config.model_name, config.max_window_batch
        )
        engine = VOCODER_FAMILIES.load(config.model_dir, settings, config.family)
        engine.warm_up()
        return engine

    def register(server: grpc.Server, slot: ModelSlot) -> None:
        vocoder_pb2_grpc.add_VocoderServiceServicer_to_server(VocoderServicer(slot), server)

    return StageSpec(
        name="vocoder",
        service_name=SERVICE_NAME,
        load=load,
        register=register,
        frames=FrameCount(f"/{SERVICE_NAME}/Decode", in_request=request_frames),
        batches=True,
    )


def request_frames(request: vocoder_pb2.DecodeRequest) -> int:
    """Frames of the block a Decode request carries."""
    return request.frames.shape[0] if request.frames.shape else 0


def main(argv: list[str] | None = None) -> None:
    """`songsmith serve vocoder [flags]`: serve until SIGTERM, then drain."""
    config = load_config(VocoderConfig, argv, prog="songsmith serve vocoder")
    serve(config, build_spec(config))
