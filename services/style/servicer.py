"""The StyleEncoderService servicer: a thin layer that decodes requests and calls the hosted StyleEngine."""

from __future__ import annotations

from collections.abc import Iterable

import grpc

from services.runtime.calls import call_token
from services.runtime.cancellation import CancellationToken
from services.runtime.codec import MAX_CHUNK_BYTES, tensor_to_proto
from services.runtime.errors import InvalidArgumentError
from services.runtime.slot import ModelSlot
from services.style.engine import CROP_MIDDLE, CROP_RANDOM, CROP_WHOLE, CropMode, StyleEngine
from songsmith.v1 import style_pb2, style_pb2_grpc

_CROP_MODES: dict[int, CropMode] = {
    style_pb2.AUDIO_CROP_UNSPECIFIED: CROP_WHOLE,
    style_pb2.AUDIO_CROP_WHOLE: CROP_WHOLE,
    style_pb2.AUDIO_CROP_RANDOM_10S: CROP_RANDOM,
    style_pb2.AUDIO_CROP_MIDDLE_10S: CROP_MIDDLE,
}


def receive_audio(
    requests: Iterable[style_pb2.EmbedAudioRequest], max_bytes: int, token: CancellationToken
) -> tuple[style_pb2.AudioEmbedOptions, bytes]:
    """Read an EmbedAudio stream: options first, then data pieces of at most 1 MiB. Stops reading
    as soon as the total passes `max_bytes` (INVALID_ARGUMENT on `data`), so nothing unbounded is
    buffered."""
    options: style_pb2.AudioEmbedOptions | None = None
    received = bytearray()
    for request in requests:
        token.check()
        part = request.WhichOneof("part")
        if options is None:
            if part != "options":
                raise InvalidArgumentError("options", "the first message must carry the options")
            options = request.options
            continue
        if part == "options":
            raise InvalidArgumentError("options", "options may only be sent in the first message")
        if part != "data":
            continue
        if len(request.data) > MAX_CHUNK_BYTES:
            raise InvalidArgumentError(
                "data", f"a data piece has {len(request.data)} bytes; pieces are at most {MAX_CHUNK_BYTES}"
            )
        if len(received) + len(request.data) > max_bytes:
            raise InvalidArgumentError("data", f"the audio file exceeds the limit of {max_bytes} bytes")
        received += request.data
    if options is None:
        raise InvalidArgumentError("options", "the stream was empty; send the options first")
    return options, bytes(received)


class StyleServicer(style_pb2_grpc.StyleEncoderServiceServicer):
    """Serves EmbedText and EmbedAudio from the engine held by the stage's ModelSlot."""

    def __init__(self, slot: ModelSlot) -> None:
        self._slot = slot

    def EmbedText(  # noqa: N802 - gRPC method name
        self, request: style_pb2.EmbedTextRequest, context: grpc.ServicerContext
    ) -> style_pb2.EmbedTextResponse:
        """Embed one prompt (from the prompt cache when it was seen recently)."""
        engine: StyleEngine = self._slot.get()
        result = engine.embed_text(request.prompt)
        return style_pb2.EmbedTextResponse(embedding=tensor_to_proto(result.vector), cached=result.cached)

    def EmbedAudio(  # noqa: N802 - gRPC method name
        self, request_iterator: Iterable[style_pb2.EmbedAudioRequest], context: grpc.ServicerContext
    ) -> style_pb2.EmbedAudioResponse:
        """Embed a streamed recording, whole or cropped as the options say."""
        engine: StyleEngine = self._slot.get()
        token = call_token(context)
        options, data = receive_audio(request_iterator, engine.limits.max_audio_bytes, token)
        crop = _CROP_MODES.get(options.crop)
        if crop is None:
            raise InvalidArgumentError("options.crop", f"unknown AudioCrop value {options.crop}")
        result = engine.embed_audio(data, crop=crop, seed=options.seed, token=token)
        return style_pb2.EmbedAudioResponse(
            embedding=tensor_to_proto(result.vector), clips=result.clips, audio_seconds=result.seconds
        )
