"""The Vocoder gRPC servicer: latent blocks in over a bidirectional stream, final PCM chunks out."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import grpc
import numpy as np

from services.runtime.calls import call_token
from services.runtime.codec import MAX_CHUNK_BYTES, proto_to_numpy, tensor_to_proto
from services.runtime.errors import InvalidArgumentError
from services.runtime.logs import job_scope
from services.runtime.server import ModelSlot
from services.vocoder.diffrhythm2.engine import VocoderEngine
from services.vocoder.diffrhythm2.streaming import PcmPiece, StreamingDecoder
from songsmith.v1 import vocoder_pb2, vocoder_pb2_grpc

MAX_CHUNK_SAMPLES = MAX_CHUNK_BYTES // np.dtype(np.float32).itemsize


def request_latents(request: vocoder_pb2.DecodeRequest) -> np.ndarray | None:
    """The block's latents as float32 (None when the message carries no tensor, e.g. a bare `final`)."""
    if not request.HasField("latents"):
        return None
    latents = proto_to_numpy(request.latents, "latents")
    if latents.dtype != np.float32:
        raise InvalidArgumentError("latents", f"dtype must be float32, got {latents.dtype}")
    return latents


def pcm_chunks(pieces: Iterable[PcmPiece], sample_rate: int) -> Iterator[vocoder_pb2.PcmChunk]:
    """The pieces ([1, n]: the wire carries mono) as chunks of at most 1 MiB of samples each, in order."""
    for piece in pieces:
        mono = piece.samples[0]
        for begin in range(0, len(mono), MAX_CHUNK_SAMPLES):
            yield vocoder_pb2.PcmChunk(
                sample_offset=piece.offset + begin,
                samples=tensor_to_proto(mono[begin : begin + MAX_CHUNK_SAMPLES]),
                sample_rate=sample_rate,
            )


class VocoderServicer(vocoder_pb2_grpc.VocoderServicer):
    """Serves Decode from the engine held by the stage's ModelSlot."""

    def __init__(self, slot: ModelSlot) -> None:
        self._slot = slot

    def Decode(  # noqa: N802 - gRPC method name
        self, request_iterator: Iterator[vocoder_pb2.DecodeRequest], context: grpc.ServicerContext
    ) -> Iterator[vocoder_pb2.PcmChunk]:
        """Decode blocks as they arrive; PCM goes out as soon as it is final, the rest at the end.

        The song ends with a block marked `final` or when the client closes its request stream;
        the last chunk sent is marked `final`. Messages after a `final` block are not read.
        """
        engine: VocoderEngine = self._slot.get()
        decoder = engine.stream(call_token(context))
        first = next(request_iterator, None)
        with job_scope(first.job_id if first is not None else ""):
            if first is not None:
                requests = itertools.chain([first], request_iterator)
                yield from self._decode_blocks(engine, decoder, requests)
            yield from self._flush(engine, decoder)

    def _decode_blocks(
        self, engine: VocoderEngine, decoder: StreamingDecoder, requests: Iterator[vocoder_pb2.DecodeRequest]
    ) -> Iterator[vocoder_pb2.PcmChunk]:
        for expected_index, request in enumerate(requests):
            if request.block_index != expected_index:
                raise InvalidArgumentError(
                    "block_index",
                    f"blocks must arrive in order: expected {expected_index}, got {request.block_index}",
                )
            latents = request_latents(request)
            if latents is not None:
                yield from pcm_chunks(decoder.iter_push(latents), engine.sample_rate)
            if request.final:
                return

    def _flush(self, engine: VocoderEngine, decoder: StreamingDecoder) -> Iterator[vocoder_pb2.PcmChunk]:
        chunks = list(pcm_chunks(decoder.finish(), engine.sample_rate))
        if not chunks:
            chunks = [
                vocoder_pb2.PcmChunk(
                    sample_offset=decoder.emitted_samples,
                    samples=tensor_to_proto(np.zeros(0, np.float32)),
                    sample_rate=engine.sample_rate,
                )
            ]
        chunks[-1].final = True
        yield from chunks
