"""The style encoder's server: its configuration and how the runtime loads and registers it."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import torch

from services.runtime.config import MIB, ServerConfig, load_config, option
from services.runtime.server import StageSpec, serve
from services.runtime.slot import ModelSlot
from services.style.engine import StyleEngine, StyleLimits, StyleSettings
from services.style.families import STYLE_FAMILIES
from services.style.servicer import StyleServicer
from songsmith.v1 import style_pb2, style_pb2_grpc

SERVICE_NAME = style_pb2.DESCRIPTOR.services_by_name["StyleEncoderService"].full_name


@dataclass
class StyleConfig(ServerConfig):
    """Settings of the style encoder stage (flags, or SONGSMITH_* environment variables)."""

    port: int = option(50052, "gRPC port")
    metrics_port: int = option(9402, "Prometheus metrics port; 0 disables the metrics endpoint")
    model_dir: str = option(
        "models/muq-mulan/MuQ-MuLan-large",
        "the style model folder; its files say its family (a MuQ-MuLan checkpoint folder, whose "
        "sub-models are looked up beside it, then in the huggingface_hub cache; or a MusicGen model)",
    )
    family: str = option("", "the style family, when detection from the folder's files is not wanted")
    model_name: str = option("", "name to serve the model under; empty: the manifest's, else the folder's")
    device: str = option("cpu", "torch device to run on (cpu, cuda, cuda:1, ...)")
    threads: int = option(0, "torch CPU threads; 0 keeps torch's default (one per visible core)")
    hub_cache_dir: str = option("", "huggingface_hub cache searched for sub-models; empty: HF_HUB_CACHE")
    text_cache_size: int = option(1024, "prompt embeddings kept in the LRU cache; 0 disables it")
    max_prompt_chars: int = option(1000, "longest prompt accepted, in characters")
    max_audio_seconds: float = option(600.0, "longest reference recording accepted, in seconds")
    max_audio_bytes: int = option(32 * MIB, "largest reference audio file accepted, in bytes")
    max_audio_sample_rate: int = option(
        192_000, "highest sample rate of a reference recording accepted, in Hz"
    )
    max_audio_channels: int = option(8, "most channels of a reference recording accepted")


def build_spec(config: StyleConfig) -> StageSpec:
    """The StageSpec that loads (and warms up) the engine and registers the servicer."""
    limits = StyleLimits(
        max_prompt_chars=config.max_prompt_chars,
        max_audio_seconds=config.max_audio_seconds,
        max_audio_bytes=config.max_audio_bytes,
        max_audio_sample_rate=config.max_audio_sample_rate,
        max_audio_channels=config.max_audio_channels,
    )

    def load() -> StyleEngine:
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        settings = StyleSettings(
            config.device, limits, config.text_cache_size, config.hub_cache_dir or None, config.model_name
        )
        return STYLE_FAMILIES.load(config.model_dir, settings, config.family)

    def register(server: grpc.Server, slot: ModelSlot) -> None:
        style_pb2_grpc.add_StyleEncoderServiceServicer_to_server(StyleServicer(slot), server)

    return StageSpec(name="style", service_name=SERVICE_NAME, load=load, register=register)


def main(argv: list[str] | None = None) -> None:
    """`songsmith serve style [flags]`: serve until SIGTERM, then drain."""
    config = load_config(StyleConfig, argv, prog="songsmith serve style")
    serve(config, build_spec(config))
