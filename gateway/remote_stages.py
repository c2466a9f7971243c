"""Stage clients over gRPC: one channel per target (round robin over its replicas), deadlines and
cancellation passed on with every call, stage statuses turned back into typed errors.

Every call first waits, for at most `CONNECT_WAIT_S`, until the channel has a connection to a replica
(UNAVAILABLE otherwise), then runs with `wait_for_ready`, so a call made just after a stage came back
waits for the reconnect instead of failing at once. Whether and when a failed call is tried again is
the gateway's retry policy's decision (`gateway.pipeline.RetryPolicy`), not the channel's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import grpc
import numpy as np

from gateway.stages import Block, GenerationEvent, SongGeneration
from services.diffusion.engine import GenerationProgress
from services.runtime.cancellation import CancellationToken
from services.runtime.codec import MAX_CHUNK_BYTES, proto_to_numpy, tensor_to_proto
from services.runtime.errors import InternalError, ServiceError, UnavailableError
from services.runtime.interceptor import error_from_call
from services.runtime.model_info import ModelInfo
from services.runtime.model_service import model_info_from_proto
from services.style.engine import CROP_MIDDLE, CROP_RANDOM, CROP_WHOLE, CropMode
from services.vocoder.engine import PcmPiece
from songsmith.v1 import (
    chart_pb2,
    chart_pb2_grpc,
    diffusion_pb2,
    diffusion_pb2_grpc,
    model_pb2,
    model_pb2_grpc,
    style_pb2,
    style_pb2_grpc,
    tokenizer_pb2,
    tokenizer_pb2_grpc,
    vocoder_pb2,
    vocoder_pb2_grpc,
)

T = TypeVar("T")
_CROPS = {
    CROP_WHOLE: style_pb2.AUDIO_CROP_WHOLE,
    CROP_RANDOM: style_pb2.AUDIO_CROP_RANDOM_10S,
    CROP_MIDDLE: style_pb2.AUDIO_CROP_MIDDLE_10S,
}
# Frames of a reference recording per message piece: at most 1 MiB of float32 per piece.
_REFERENCE_PIECE_BYTES = MAX_CHUNK_BYTES
# The longest one call waits for a connection to its stage before it reports UNAVAILABLE.
CONNECT_WAIT_S = 10.0
_POLL_S = 0.1


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


class RemoteStage:
    """A channel to one stage target and its ModelInfoService."""

    stage = ""

    def __init__(self, target: str, channel: grpc.Channel) -> None:
        """Use `channel` (owned by the router, which may share it) to reach `target`."""
        self.target = target
        self.channel = channel
        self._model = model_pb2_grpc.ModelInfoServiceStub(channel)

    def wait_for_connection(self, token: CancellationToken) -> None:
        """Return once the channel has a connection to a replica of the stage; UNAVAILABLE after
        CONNECT_WAIT_S without one (sooner when the token's deadline comes first)."""
        token.check()
        remaining = token.time_remaining()
        wait = CONNECT_WAIT_S if remaining is None else max(0.0, min(CONNECT_WAIT_S, remaining))
        deadline = time.monotonic() + wait
        ready = grpc.channel_ready_future(self.channel)
        try:
            while True:
                try:
                    ready.result(timeout=min(_POLL_S, max(0.0, deadline - time.monotonic())))
                    return
                except grpc.FutureTimeoutError:
                    if time.monotonic() >= deadline:
                        raise UnavailableError(
                            f"{self.stage}: no connection to {self.target} within {wait:.1f} s"
                        ) from None
                    token.check()
        finally:
            ready.cancel()

    def _unary(self, token: CancellationToken, invoke: Callable[[float | None], T]) -> T:
        """A unary call once connected, waiting for readiness, with the token's deadline."""
        self.wait_for_connection(token)
        return _call(self.stage, token, invoke)

    def model_info(self, token: CancellationToken) -> ModelInfo:
        """What the stage reports it hosts."""
        reply = self._unary(
            token,
            lambda timeout: self._model.GetModelInfo(
                model_pb2.GetModelInfoRequest(), timeout=timeout, wait_for_ready=True
            ),
        )
        return model_info_from_proto(reply.model)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()


class RemoteTokenizer(RemoteStage):
    """The lyric tokenizer service."""

    stage = "tokenizer"

    def __init__(self, target: str, channel: grpc.Channel) -> None:
        super().__init__(target, channel)
        self._stub = tokenizer_pb2_grpc.LyricTokenizerServiceStub(channel)

    def tokenize(
        self, lyrics: str, family: str, seconds: float, job_id: str, token: CancellationToken
    ) -> np.ndarray:
        """Token ids, int64, as `family`'s model reads them."""
        request = tokenizer_pb2.TokenizeRequest(lyrics=lyrics, job_id=job_id, family=family, seconds=seconds)
        reply = self._unary(
            token, lambda timeout: self._stub.Tokenize(request, timeout=timeout, wait_for_ready=True)
        )
        return proto_to_numpy(reply.token_ids, "token_ids").astype(np.int64)


class RemoteStyle(RemoteStage):
    """The style encoder service."""

    stage = "style"

    def __init__(self, target: str, channel: grpc.Channel) -> None:
        super().__init__(target, channel)
        self._stub = style_pb2_grpc.StyleEncoderServiceStub(channel)

    def embed_text(self, prompt: str, job_id: str, token: CancellationToken) -> np.ndarray:
        """The conditioning for a prompt."""
        request = style_pb2.EmbedTextRequest(prompt=prompt, job_id=job_id)
        reply = self._unary(
            token, lambda timeout: self._stub.EmbedText(request, timeout=timeout, wait_for_ready=True)
        )
        return proto_to_numpy(reply.embedding, "embedding").copy()

    def embed_audio(self, data: bytes, crop: CropMode, job_id: str, token: CancellationToken) -> np.ndarray:
        """The conditioning for an encoded recording, sent in 1 MiB pieces."""

        def messages() -> Iterator[style_pb2.EmbedAudioRequest]:
            options = style_pb2.AudioEmbedOptions(crop=_CROPS[crop], job_id=job_id)
            yield style_pb2.EmbedAudioRequest(options=options)
            for start in range(0, len(data), MAX_CHUNK_BYTES):
                yield style_pb2.EmbedAudioRequest(data=data[start : start + MAX_CHUNK_BYTES])

        reply = self._unary(
            token, lambda timeout: self._stub.EmbedAudio(messages(), timeout=timeout, wait_for_ready=True)
        )
        return proto_to_numpy(reply.embedding, "embedding").copy()


def _optional_tensor(array: np.ndarray | None) -> Any:
    return None if array is None else tensor_to_proto(np.ascontiguousarray(array))


def _reference_pieces(reference: np.ndarray | None) -> list:
    if reference is None:
        return []
    rows = max(1, _REFERENCE_PIECE_BYTES // max(1, reference[:1].nbytes))
    return [
        tensor_to_proto(np.ascontiguousarray(reference[i : i + rows])) for i in range(0, len(reference), rows)
    ]


class RemoteGeneration(RemoteStage):
    """The generation (`diffusion`) service."""

    stage = "diffusion"

    def __init__(self, target: str, channel: grpc.Channel) -> None:
        super().__init__(target, channel)
        self._stub = diffusion_pb2_grpc.DiffusionServiceStub(channel)

    def generate(self, song: SongGeneration, token: CancellationToken) -> Iterator[GenerationEvent]:
        """The song's blocks after the prefix, and progress, as the stage streams them."""
        token.check()
        request = song.request
        message = diffusion_pb2.GenerateLatentsRequest(
            job_id=request.job_id,
            token_ids=_optional_tensor(request.tokens),
            style=_optional_tensor(request.style),
            melody=_optional_tensor(request.melody),
            seed=request.seed,
            steps=request.steps,
            max_frames=request.max_frames,
            seconds=request.seconds,
            prefix=[
                diffusion_pb2.LatentBlock(index=i, frames=tensor_to_proto(block))
                for i, block in enumerate(request.prefix)
            ],
            reference=_reference_pieces(request.reference),
            prefix_revision=song.prefix_revision,
        )
        if request.cfg_strength is not None:
            message.cfg_strength = request.cfg_strength
        if song.options_field:
            getattr(message, song.options_field).CopyFrom(song.options)
        self.wait_for_connection(token)
        call = self._stub.GenerateLatents(message, timeout=token.time_remaining(), wait_for_ready=True)
        for reply in _streamed(self.stage, token, call):
            if reply.HasField("progress"):
                yield GenerationProgress(reply.progress.step, reply.progress.total_steps)
                continue
            block = reply.block
            frames = proto_to_numpy(block.frames, "frames").copy()
            yield Block(
                block.index,
                frames,
                block.final,
                block.max_blocks,
                block.frames_done,
                block.model_revision,
                block.candidate,
            )


class RemoteVocoder(RemoteStage):
    """The vocoder service."""

    stage = "vocoder"

    def __init__(self, target: str, channel: grpc.Channel) -> None:
        super().__init__(target, channel)
        self._stub = vocoder_pb2_grpc.VocoderServiceStub(channel)

    def decode(
        self, blocks: Iterable[np.ndarray], job_id: str, token: CancellationToken, start_sample: int = 0
    ) -> Iterator[PcmPiece]:
        """Streaming decode over one bidirectional call; blocks are sent as they are produced and the
        request stream ends after the last one; the samples before `start_sample` are not sent. A
        failure while producing blocks (the generation stage, say) is raised in preference to the
        vocoder's resulting CANCELLED."""
        failure: list[BaseException] = []

        def requests() -> Iterator[vocoder_pb2.DecodeRequest]:
            index = 0
            try:
                for frames in blocks:
                    yield vocoder_pb2.DecodeRequest(
                        job_id=job_id,
                        block_index=index,
                        frames=tensor_to_proto(frames),
                        start_sample=start_sample if index == 0 else 0,
                    )
                    index += 1
            except Exception as exc:
                failure.append(exc)
                raise

        self.wait_for_connection(token)
        call = self._stub.Decode(requests(), timeout=token.time_remaining(), wait_for_ready=True)
        try:
            for chunk in _streamed(self.stage, token, call):
                yield PcmPiece(chunk.sample_offset, proto_to_numpy(chunk.samples, "samples").copy())
        except ServiceError:
            if failure:
                raise failure[0] from None
            raise
        if failure:
            raise failure[0]

    def encode(self, data: bytes, job_id: str, token: CancellationToken) -> np.ndarray:
        """The stage's encoding of the recording, sent in 1 MiB pieces and received in pieces."""

        def messages() -> Iterator[vocoder_pb2.EncodeRequest]:
            yield vocoder_pb2.EncodeRequest(options=vocoder_pb2.EncodeOptions(job_id=job_id))
            for start in range(0, len(data), MAX_CHUNK_BYTES):
                yield vocoder_pb2.EncodeRequest(data=data[start : start + MAX_CHUNK_BYTES])

        self.wait_for_connection(token)
        call = self._stub.Encode(messages(), timeout=token.time_remaining(), wait_for_ready=True)
        pieces = [proto_to_numpy(reply.frames, "frames") for reply in _streamed(self.stage, token, call)]
        if not pieces:
            raise InternalError("the vocoder sent no frames for the recording")
        return np.concatenate(pieces, axis=0)


class RemoteChart(RemoteStage):
    """The chart service."""

    stage = "chart"

    def __init__(self, target: str, channel: grpc.Channel) -> None:
        super().__init__(target, channel)
        self._stub = chart_pb2_grpc.ChartServiceStub(channel)

    def make_charts(
        self, options: chart_pb2.ChartOptions, audio: bytes, token: CancellationToken
    ) -> Iterator[chart_pb2.GenerateChartsResponse]:
        """The options, then the song's file in 1 MiB pieces; the stage's responses as they come."""

        def messages() -> Iterator[chart_pb2.GenerateChartsRequest]:
            yield chart_pb2.GenerateChartsRequest(options=options)
            for start in range(0, len(audio), MAX_CHUNK_BYTES):
                yield chart_pb2.GenerateChartsRequest(encoded_audio=audio[start : start + MAX_CHUNK_BYTES])

        token.check()
        call = self._stub.GenerateCharts(messages(), timeout=token.time_remaining())
        yield from _streamed(self.stage, token, call)
