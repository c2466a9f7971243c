"""The ChartService gRPC servicer: read the song and the options, run the engine, stream the events."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import grpc
import numpy as np

from services.chart.engine import (
    DEFAULT_AUDIO_FILENAME,
    DEFAULT_GUIDANCE,
    DEFAULT_JACK_INTERVAL_MS,
    DEFAULT_STEPS,
    Chart,
    ChartEngine,
    ChartEvent,
    ChartRequest,
    FeatureValue,
    SongAudio,
)
from services.runtime.calls import call_token
from services.runtime.cancellation import CancellationToken
from services.runtime.codec import MAX_CHUNK_BYTES, TensorAssembler, tensor_to_proto
from services.runtime.errors import InvalidArgumentError
from services.runtime.logs import job_scope
from services.runtime.slot import ModelSlot
from songsmith.v1 import chart_pb2, chart_pb2_grpc

PCM_FIELD = "pcm"
ENCODED_FIELD = "encoded_audio"


def _enum_word(enum_type, number: int, field: str) -> str:
    """An enum value as its lower-case word without the enum's prefix (RANK_STATUS_LOVED -> loved);
    INVALID_ARGUMENT on `field` for a number the enum does not define."""
    value = enum_type.values_by_number.get(number)
    if value is None:
        raise InvalidArgumentError(field, f"{number} is not a {enum_type.name} value")
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum_type.name).upper() + "_"
    return value.name.removeprefix(prefix).lower()


def feature_values(features: chart_pb2.ChartFeatures) -> dict[str, FeatureValue]:
    """The set fields of the typed prompt as feature name -> value (the proto's field names are the
    model's feature names; enum values become their words)."""
    values: dict[str, FeatureValue] = {}
    for field, value in features.ListFields():
        if field.enum_type is not None:
            values[field.name] = _enum_word(field.enum_type, value, f"options.features.{field.name}")
        else:
            values[field.name] = value
    return values


def receive_song(
    requests: Iterable[chart_pb2.GenerateChartsRequest], max_bytes: int, token: CancellationToken
) -> tuple[chart_pb2.ChartOptions, SongAudio]:
    """Read a GenerateCharts stream: options first, then the song as PCM chunks or encoded bytes.

    INVALID_ARGUMENT for a missing or repeated options message, both song forms in one stream, no song
    at all, or encoded bytes over `max_bytes`; a PCM tensor over `max_bytes` is RESOURCE_EXHAUSTED
    before anything is allocated.
    """
    options: chart_pb2.ChartOptions | None = None
    encoded = bytearray()
    assembler: TensorAssembler | None = None
    for request in requests:
        token.check()
        part = request.WhichOneof("part")
        if options is None:
            if part != "options":
                raise InvalidArgumentError("options", "the first message must carry the options")
            options = request.options
        elif part == "options":
            raise InvalidArgumentError("options", "options may only be sent in the first message")
        elif part == PCM_FIELD:
            if encoded:
                raise InvalidArgumentError(PCM_FIELD, "the song was already sent as encoded audio")
            assembler = assembler or TensorAssembler(max_bytes, PCM_FIELD)
            assembler.add(request.pcm)
        elif part == ENCODED_FIELD:
            if assembler is not None:
                raise InvalidArgumentError(ENCODED_FIELD, "the song was already sent as PCM")
            if len(request.encoded_audio) > MAX_CHUNK_BYTES:
                raise InvalidArgumentError(ENCODED_FIELD, f"a piece is over {MAX_CHUNK_BYTES} bytes")
            if len(encoded) + len(request.encoded_audio) > max_bytes:
                raise InvalidArgumentError(
                    ENCODED_FIELD, f"the audio file exceeds the limit of {max_bytes} bytes"
                )
            encoded += request.encoded_audio
    if options is None:
        raise InvalidArgumentError("options", "the stream was empty; send the options first")
    if assembler is not None:
        return options, SongAudio(pcm=assembler.result(), sample_rate=options.pcm_sample_rate)
    return options, SongAudio(encoded=bytes(encoded))


def chart_request(options: chart_pb2.ChartOptions, audio: SongAudio) -> ChartRequest:
    """The engine request for `options` (proto defaults: steps 100, guidance 5, count 1, snapping
    on, mini-jack interval 90 ms)."""
    interval_ms = DEFAULT_JACK_INTERVAL_MS
    if options.HasField("mini_jack_interval"):
        interval_ms = options.mini_jack_interval.ToNanoseconds() / 1e6
    return ChartRequest(
        audio=audio,
        features=feature_values(options.features),
        seed=options.seed,
        steps=options.steps or DEFAULT_STEPS,
        guidance=options.guidance if options.HasField("guidance") else DEFAULT_GUIDANCE,
        count=options.count or 1,
        snap=options.snap_to_grid if options.HasField("snap_to_grid") else True,
        jack_interval_ms=interval_ms,
        title=options.title,
        artist=options.artist,
        audio_filename=options.audio_filename or DEFAULT_AUDIO_FILENAME,
    )


def chart_message(chart: Chart) -> chart_pb2.GeneratedChart:
    """A finished chart as its wire message."""
    return chart_pb2.GeneratedChart(
        index=chart.index,
        seed=chart.seed,
        keys=chart.keys,
        hit_objects=[
            chart_pb2.HitObject(column=hit.column, start_ms=hit.start_ms, end_ms=hit.end_ms)
            for hit in chart.hit_objects
        ],
        bpm=chart.bpm,
        offset_ms=chart.offset_ms,
        version=chart.version,
        file_name=chart.file_name,
        osu=chart.osu,
        latents=tensor_to_proto(np.ascontiguousarray(chart.latents, dtype=np.float32)),
    )


def response(event: ChartEvent) -> chart_pb2.GenerateChartsResponse:
    """One engine event as a response message."""
    if isinstance(event, Chart):
        return chart_pb2.GenerateChartsResponse(chart=chart_message(event))
    return chart_pb2.GenerateChartsResponse(
        progress=chart_pb2.ChartProgress(step=event.step, total_steps=event.total_steps)
    )


class ChartServicer(chart_pb2_grpc.ChartServiceServicer):
    """Serves GenerateCharts from the engine held by the stage's ModelSlot."""

    def __init__(self, slot: ModelSlot, max_audio_bytes: int) -> None:
        """`max_audio_bytes` bounds the song as received (encoded bytes or PCM tensor)."""
        self._slot = slot
        self._max_audio_bytes = max_audio_bytes

    def GenerateCharts(  # noqa: N802 - gRPC method name
        self, request_iterator: Iterator[chart_pb2.GenerateChartsRequest], context: grpc.ServicerContext
    ) -> Iterator[chart_pb2.GenerateChartsResponse]:
        """Read the song, validate everything, then stream progress and the charts."""
        engine: ChartEngine = self._slot.get()
        token = call_token(context)
        options, audio = receive_song(request_iterator, self._max_audio_bytes, token)
        with job_scope(options.job_id):
            for event in engine.generate(chart_request(options, audio), token):
                yield response(event)
