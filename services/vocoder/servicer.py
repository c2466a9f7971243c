"""The VocoderService servicer: blocks of frames in over a bidirectional stream, final PCM out.

Family-agnostic: the hosted engine's stream decoder takes each block's frames as sent and returns
PCM [channels, n] as soon as it is final; the servicer only cuts it into wire chunks, and drops the
samples a resuming client already has (`start_sample`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import grpc
import numpy as np

from services.runtime.calls import call_token
from services.runtime.codec import MAX_CHUNK_BYTES, proto_to_numpy, tensor_to_proto
from services.runtime.errors import InvalidArgumentError
from services.runtime.logs import job_scope
from services.runtime.slot import ModelSlot
from services.vocoder.engine import PcmPiece, StreamDecoder, VocoderEngine, from_sample
from songsmith.v1 import vocoder_pb2, vocoder_pb2_grpc

SAMPLE_BYTES = np.dtype(np.float32).itemsize
# The most recording bytes an Encode call may send: no family's encoder takes more.
MAX_RECORDING_BYTES = 256 << 20


def request_frames(request: vocoder_pb2.DecodeRequest) -> np.ndarray | None:
    """The block's frames (None when the message carries no tensor, e.g. a bare `final`)."""
    if not request.HasField("frames"):
        return None
    return proto_to_numpy(request.frames, "frames")


def pcm_chunks(pieces: Iterable[PcmPiece], sample_rate: int) -> Iterator[vocoder_pb2.DecodeResponse]:
    """The pieces as wire chunks of at most 1 MiB of samples each, in order."""
    for piece in pieces:
        channels = max(1, piece.samples.shape[0])
        per_chunk = MAX_CHUNK_BYTES // (SAMPLE_BYTES * channels)
        length = piece.samples.shape[1]
        for begin in range(0, length, per_chunk):
            yield vocoder_pb2.DecodeResponse(
                sample_offset=piece.offset + begin,
                samples=tensor_to_proto(np.ascontiguousarray(piece.samples[:, begin : begin + per_chunk])),
                sample_rate=sample_rate,
            )


def read_upload(requests: Iterator[vocoder_pb2.EncodeRequest]) -> tuple[vocoder_pb2.EncodeOptions, bytes]:
    """The options and the recording's bytes of an Encode stream; InvalidArgumentError when the
    options do not come first, come twice, or the file passes MAX_RECORDING_BYTES."""
    first = next(requests, None)
    if first is None or first.WhichOneof("part") != "options":
        raise InvalidArgumentError("options", "the first message must carry the options")
    data = bytearray()
    for request in requests:
        if request.WhichOneof("part") != "data":
            raise InvalidArgumentError("options", "only the first message may carry options")
        data += request.data
        if len(data) > MAX_RECORDING_BYTES:
            raise InvalidArgumentError(
                "data", f"the recording passes the limit of {MAX_RECORDING_BYTES} bytes"
            )
    return first.options, bytes(data)


def frame_chunks(frames: np.ndarray) -> Iterator[vocoder_pb2.EncodeResponse]:
    """`frames` [n, channels] as wire messages of at most 1 MiB each, in order along the frame axis."""
    rows = max(1, MAX_CHUNK_BYTES // max(1, frames.itemsize * frames.shape[1]))
    for begin in range(0, len(frames), rows):
        yield vocoder_pb2.EncodeResponse(
            frames=tensor_to_proto(np.ascontiguousarray(frames[begin : begin + rows]))
        )


class VocoderServicer(vocoder_pb2_grpc.VocoderServiceServicer):
    """Serves Decode from the engine held by the stage's ModelSlot."""

    def __init__(self, slot: ModelSlot) -> None:
        self._slot = slot

    def Decode(  # noqa: N802 - gRPC method name
        self, request_iterator: Iterator[vocoder_pb2.DecodeRequest], context: grpc.ServicerContext
    ) -> Iterator[vocoder_pb2.DecodeResponse]:
        """Decode blocks as they arrive; PCM goes out as soon as it is final, the rest at the end.

        The song ends with a block marked `final` or when the client closes its request stream;
        the last chunk sent is marked `final`. Messages after a `final` block are not read.
        """
        engine: VocoderEngine = self._slot.get()
        decoder = engine.stream(call_token(context))
        first = next(request_iterator, None)
        start = first.start_sample if first is not None else 0
        if start:
            decoder.skip_to(start)
        with job_scope(first.job_id if first is not None else ""):
            if first is not None:
                requests = itertools.chain([first], request_iterator)
                yield from self._decode_blocks(engine, decoder, requests, start)
            yield from self._flush(engine, decoder, start)

    def _decode_blocks(
        self,
        engine: VocoderEngine,
        decoder: StreamDecoder,
        requests: Iterator[vocoder_pb2.DecodeRequest],
        start: int,
    ) -> Iterator[vocoder_pb2.DecodeResponse]:
        for expected_index, request in enumerate(requests):
            if request.block_index != expected_index:
                raise InvalidArgumentError(
                    "block_index",
                    f"blocks must arrive in order: expected {expected_index}, got {request.block_index}",
                )
            frames = request_frames(request)
            if frames is not None:
                yield from pcm_chunks(from_sample(decoder.push(frames), start), engine.info.sample_rate)
            if request.final:
                return

    def _flush(
        self, engine: VocoderEngine, decoder: StreamDecoder, start: int
    ) -> Iterator[vocoder_pb2.DecodeResponse]:
        rate = engine.info.sample_rate
        chunks = list(pcm_chunks(from_sample(decoder.finish(), start), rate))
        if not chunks:
            silence = np.zeros((engine.info.channels, 0), np.float32)
            offset = max(start, decoder.emitted_samples)
            chunks = [
                vocoder_pb2.DecodeResponse(
                    sample_offset=offset, samples=tensor_to_proto(silence), sample_rate=rate
                )
            ]
        chunks[-1].final = True
        yield from chunks

    def Encode(  # noqa: N802 - gRPC method name
        self, request_iterator: Iterator[vocoder_pb2.EncodeRequest], context: grpc.ServicerContext
    ) -> Iterator[vocoder_pb2.EncodeResponse]:
        """Encode one uploaded recording into the frames its family's generation stage takes."""
        engine: VocoderEngine = self._slot.get()
        options, data = read_upload(request_iterator)
        with job_scope(options.job_id):
            yield from frame_chunks(engine.encode_recording(data, call_token(context)))
