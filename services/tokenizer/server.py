"""The lyric tokenizer's server: its configuration and how the runtime loads and registers it."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from services.runtime.config import ServerConfig, load_config, option
from services.runtime.server import StageSpec, serve
from services.runtime.slot import ModelSlot
from services.tokenizer.engine import TokenizerEngine
from services.tokenizer.servicer import LyricTokenizerServicer
from songsmith.v1 import tokenizer_pb2, tokenizer_pb2_grpc

SERVICE_NAME = tokenizer_pb2.DESCRIPTOR.services_by_name["LyricTokenizerService"].full_name


@dataclass
class TokenizerConfig(ServerConfig):
    """Settings of the lyric tokenizer stage (flags, or SONGSMITH_* environment variables)."""

    port: int = option(50051, "gRPC port")
    metrics_port: int = option(9401, "Prometheus metrics port; 0 disables the metrics endpoint")
    data_dir: str = option(
        "",
        "folder with the lyric front end's data in the diffrhythm2/g2p layout (g2p/vocab.json, "
        "sources/...); empty: the installed diffrhythm2-fork package",
    )
    max_chars: int = option(20_000, "longest lyrics accepted, in characters")
    max_lines: int = option(500, "most non-empty lyrics lines accepted")
    max_line_chars: int = option(500, "longest single lyrics line accepted, in characters")
    onnx_threads: int = option(1, "CPU threads of the polyphone model per call; 0: one per core")


def build_spec(config: TokenizerConfig) -> StageSpec:
    """The StageSpec that loads and warms up the engine (espeak, jieba, ONNX) and registers the servicer."""

    def load() -> TokenizerEngine:
        return TokenizerEngine.load(config)

    def register(server: grpc.Server, slot: ModelSlot) -> None:
        tokenizer_pb2_grpc.add_LyricTokenizerServiceServicer_to_server(LyricTokenizerServicer(slot), server)

    return StageSpec(name="tokenizer", service_name=SERVICE_NAME, load=load, register=register)


def main(argv: list[str] | None = None) -> None:
    """`songsmith serve tokenizer [flags]`: serve until SIGTERM, then drain."""
    config = load_config(TokenizerConfig, argv, prog="songsmith serve tokenizer")
    serve(config, build_spec(config))
