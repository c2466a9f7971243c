"""The four stages over gRPC: one channel per stage (round robin over its replicas), deadlines and
cancellation passed on with every call, stage statuses turned back into typed errors."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import numpy as np

from gateway.stages import LatentBlock, LatentRequest, PcmPiece
from services.runtime.cancellation import CancellationToken
from services.runtime.channels import ChannelSecurity, create_channel
from services.runtime.codec import MAX_CHUNK_BYTES, proto_to_numpy, tensor_to_proto
from services.runtime.errors import ServiceError
from services.runtime.interceptor import error_from_call
from songsmith.v1 import (
    diffusion_pb2,
    diffusion_pb2_grpc,
    style_pb2,
    style_pb2_grpc,
    tokenizer_pb2,
    tokenizer_pb2_grpc,
    vocoder_pb2,
    vocoder_pb2_grpc,
)

T = TypeVar("T")
MODEL_NAME = "diffrhythm2"
SAMPLE_RATE = 48_000


@dataclass(frozen=True)
class StageTargets:
    """gRPC targets of the four stages, e.g. `dns:///songsmith-diffusion-headless:50053`."""

    tokenizer: str
    style: str
    diffusion: str
    vocoder: str


def _call(stage: str, token: CancellationToken, invoke: Callable[[float | None], T]) -> T:
    """Run a unary call with the token's remaining time as its deadline; typed errors on failure."""
    token.check()
    try:
        return invoke(token.time_remaining())
    except grpc.RpcError as exc:
        raise error_from_call(exc, stage) from exc


def _streamed(stage: str, token: CancellationToken, call: Any) -> Iterator[Any]:
    """Iterate a streaming call, cancelling it when the token is cancelled; typed errors on failure."""
    token.on_cancel(call.cancel)
    try:
        yield from call
    except grpc.RpcError as exc:
        token.check()
        raise error_from_call(exc, stage) from exc
    finally:
        call.cancel()


class RemoteStages:
    """Stage clients over gRPC channels."""

    model_name = MODEL_NAME
    sample_rate = SAMPLE_RATE

    def __init__(self, targets: StageTargets, security: ChannelSecurity | None = None) -> None:
        """Open one channel per stage (connections are made lazily, per replica)."""
        retrying = [
            tokenizer_pb2.DESCRIPTOR.services_by_name["LyricTokenizer"].full_name,
            style_pb2.DESCRIPTOR.services_by_name["StyleEncoder"].full_name,
        ]
        self._channels = {
            name: create_channel(target, retry_services=retrying, security=security)
            for name, target in vars(targets).items()
        }
        self._tokenizer = tokenizer_pb2_grpc.LyricTokenizerStub(self._channels["tokenizer"])
        self._style = style_pb2_grpc.StyleEncoderStub(self._channels["style"])
        self._diffusion = diffusion_pb2_grpc.DiffusionStub(self._channels["diffusion"])
        self._vocoder = vocoder_pb2_grpc.VocoderStub(self._channels["vocoder"])

    def tokenize(self, lyrics: str, job_id: str, token: CancellationToken) -> np.ndarray:
        """Lyric token ids, int64 [L]."""
        request = tokenizer_pb2.TokenizeRequest(lyrics=lyrics, job_id=job_id)
        reply = _call("tokenizer", token, lambda timeout: self._tokenizer.Tokenize(request, timeout=timeout))
        return proto_to_numpy(reply.token_ids, "token_ids").astype(np.int64)

    def embed_text(self, prompt: str, job_id: str, token: CancellationToken) -> np.ndarray:
        """The style vector of a prompt."""
        request = style_pb2.EmbedTextRequest(prompt=prompt, job_id=job_id)
        reply = _call("style", token, lambda timeout: self._style.EmbedText(request, timeout=timeout))
        return proto_to_numpy(reply.embedding, "embedding").copy()

    def embed_audio(self, data: bytes, job_id: str, token: CancellationToken) -> np.ndarray:
        """The style vector of a whole reference recording, sent in 1 MiB pieces."""

        def messages() -> Iterator[style_pb2.EmbedAudioRequest]:
            yield style_pb2.EmbedAudioRequest(options=style_pb2.AudioEmbedOptions(job_id=job_id))
            for start in range(0, len(data), MAX_CHUNK_BYTES):
                yield style_pb2.EmbedAudioRequest(data=data[start : start + MAX_CHUNK_BYTES])

        reply = _call("style", token, lambda timeout: self._style.EmbedAudio(messages(), timeout=timeout))
        return proto_to_numpy(reply.embedding, "embedding").copy()

    def generate_latents(self, request: LatentRequest, token: CancellationToken) -> Iterator[LatentBlock]:
        """The song's blocks after the prefix, as the diffusion stage streams them."""
        token.check()
        message = diffusion_pb2.GenerateLatentsRequest(
            job_id=request.job_id,
            token_ids=tensor_to_proto(request.tokens.astype(np.int64)),
            style=tensor_to_proto(request.style.astype(np.float32)),
            seed=request.seed,
            steps=request.steps,
            cfg_strength=request.cfg_strength,
            max_frames=request.max_frames,
            prefix=[
                diffusion_pb2.LatentBlock(index=i, latents=tensor_to_proto(block))
                for i, block in enumerate(request.prefix)
            ],
        )
        call = self._diffusion.GenerateLatents(message, timeout=token.time_remaining())
        for block in _streamed("diffusion", token, call):
            latents = proto_to_numpy(block.latents, "latents").copy()
            yield LatentBlock(block.index, latents, block.final, block.max_blocks)

    def decode(
        self, blocks: Iterable[np.ndarray], job_id: str, token: CancellationToken
    ) -> Iterator[PcmPiece]:
        """Streaming decode over one bidirectional call; blocks are sent as they are produced and the
        request stream ends after the last one. A failure while producing blocks (the diffusion
        stage, say) is raised in preference to the vocoder's resulting CANCELLED."""
        failure: list[BaseException] = []

        def requests() -> Iterator[vocoder_pb2.DecodeRequest]:
            index = 0
            try:
                for latents in blocks:
                    yield vocoder_pb2.DecodeRequest(
                        job_id=job_id, block_index=index, latents=tensor_to_proto(latents)
                    )
                    index += 1
            except Exception as exc:
                failure.append(exc)
                raise

        call = self._vocoder.Decode(requests(), timeout=token.time_remaining())
        try:
            for chunk in _streamed("vocoder", token, call):
                yield PcmPiece(chunk.sample_offset, proto_to_numpy(chunk.samples, "samples").copy())
        except ServiceError:
            if failure:
                raise failure[0] from None
            raise
        if failure:
            raise failure[0]

    def close(self) -> None:
        """Close every channel."""
        for channel in self._channels.values():
            channel.close()
