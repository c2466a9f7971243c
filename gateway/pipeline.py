"""One song through its model's stages, overlapped: lyrics and style in parallel, then the generation
stage streaming blocks into the vocoder streaming PCM into the audio encoder and out.

A request for several candidates (songs sampled together, DiffRhythm v1) gets one stream of blocks,
candidate after candidate; each candidate is decoded by its own vocoder stream into its own file,
whose audio events carry its number.

Family-agnostic: the generation stage's ModelInfo says which inputs the model reads (lyrics,
a style prompt, a style or melody recording) and its family (for the lyric front end); the family's
own options travel as the request's typed message. No branch here names a family.

A song that asks for charts goes, once its file is finished, to the gateway's chart stage
(`gateway.charts`); the charts and the audio come back packed as an `.osz`.

If the generation stage becomes unavailable mid-song (a replica died or restarted), generation
resumes from the last completed block by sending the blocks so far as the prefix; generation is
deterministic, so the finished song is identical to an uninterrupted one. A caller that kept the
blocks of an earlier, interrupted run (the job store does) passes them in the same way, unless the
model's revision has changed since: then the song starts again from block 0, with a notice.
"""

from __future__ import annotations

import itertools
import logging
import math
import operator
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from google.protobuf.duration_pb2 import Duration

from gateway import charts as chart_packing
from gateway.audio import CONTAINERS, FakeStereo, StreamingEncoder, normalize_loudness, peak_normalize_int16
from gateway.router import RoutedModel, Router
from gateway.stages import Block, SongGeneration
from services.diffusion.engine import GenerationProgress, GenerationRequest
from services.diffusion.families import GENERATION_FAMILIES
from services.runtime.cancellation import CancellationToken
from services.runtime.codec import MAX_CHUNK_BYTES
from services.runtime.errors import CancelledError, FieldViolation, InvalidArgumentError, UnavailableError
from services.runtime.model_info import LYRICS, MELODY_AUDIO, REFERENCE_AUDIO, STYLE_AUDIO, ModelInfo
from services.runtime.tracing import carry_context
from services.style.engine import CROP_WHOLE, CropMode
from songsmith.v1 import song_pb2

log = logging.getLogger(__name__)

EventSink = Callable[[song_pb2.SongEvent], None]
BlockSink = Callable[[Block], None]
RESUME_RESTARTED = "resume_restarted"
_END = object()


@dataclass(frozen=True)
class SongSpec:
    """A validated song request with the gateway's defaults filled in (model defaults stay 0/None).

    `keep_raw_level`: write the song at its decoded level even for a model whose reference writes
    songs peak-normalised (a family's options may carry it: DiffRhythm v1's)."""

    job_id: str
    model: str
    lyrics: str
    style_prompt: str | None
    style_audio: bytes | None
    seed: int
    steps: int
    cfg_strength: float | None
    max_seconds: float
    audio_format: int
    stereo: bool
    normalize_loudness: bool
    target_lufs: float
    options_field: str | None = None
    options: Any = None
    reference_audio: bytes | None = None
    charts: song_pb2.ChartRequest | None = None
    keep_raw_level: bool = False


@dataclass(frozen=True)
class SongResult:
    """The finished song: its summary, the encoded file and, when charts were asked for, the `.osz`.
    With several candidates, `data` is candidate 0's file and `other_candidates` holds the files of
    candidates 1, 2, ..."""

    summary: song_pb2.SongSummary
    data: bytes
    other_candidates: tuple[bytes, ...] = ()
    osz: bytes | None = None

    @property
    def files(self) -> list[bytes]:
        """Every candidate's file, candidate 0 first (the one file of a single song)."""
        return [self.data, *self.other_candidates]


@dataclass(frozen=True)
class RetryPolicy:
    """How patiently a lost generation stream is resumed: retried with backoff until `budget_s` have
    passed without a new block. The default outlasts a generation stage's cold start with its model
    load (a pod rescheduled, a process restarted under load), so a song survives a replica's restart."""

    budget_s: float = 300.0
    first_backoff_s: float = 0.5
    max_backoff_s: float = 5.0


# The stages' name for the song length, which the caller sent as SongRequest.max_duration.
LENGTH_FIELDS = {"seconds": "max_duration"}
# The song request's fields behind the generation stage's: the gateway derives the stage's length from
# `max_duration`, its reference frames from `reference_audio` and its melody from `style_audio`.
GENERATION_TO_SONG_FIELDS = {
    **LENGTH_FIELDS,
    "max_frames": "max_duration",
    "reference": "reference_audio",
    "melody": "style_audio",
}


def request_fields(exc: InvalidArgumentError, names: dict[str, str]) -> InvalidArgumentError:
    """A stage's INVALID_ARGUMENT with its field names turned into the SongRequest's (`names`: the
    stage's name -> the request's), so the caller is told about the field it sent."""
    renamed = [FieldViolation(names.get(v.field, v.field), v.description) for v in exc.violations]
    return InvalidArgumentError(violations=renamed)


def _renamed(names: dict[str, str], run: Callable[[], np.ndarray]) -> np.ndarray:
    """`run()`, a stage call, with its complaints on the stage's fields reported on the song's."""
    try:
        return run()
    except InvalidArgumentError as exc:
        raise request_fields(exc, names) from exc


def _upload(field: str, run: Callable[[], np.ndarray]) -> np.ndarray:
    """`run()`, a stage reading an uploaded recording, with the stage's complaints about its `data`
    reported on the request's `field`, which is what the caller sent."""
    return _renamed({"data": field}, run)


def _tokenize(run: Callable[[], np.ndarray]) -> np.ndarray:
    """`run()`, the tokenizer, with its complaints about the song length on `max_duration`."""
    return _renamed(LENGTH_FIELDS, run)


def style_crop(family: str) -> CropMode:
    """How the style stage crops a style recording for a model of `family` (its generation family's
    `style_crop`: DiffRhythm v1 takes the 10 s around the middle), the whole recording for a family
    this gateway does not know."""
    known = {entry.name: entry for entry in GENERATION_FAMILIES.families()}
    return known[family].style_crop if family in known else CROP_WHOLE


def duration(seconds: float) -> Duration:
    """A protobuf Duration of `seconds`."""
    value = Duration()
    value.FromNanoseconds(round(seconds * 1e9))
    return value


class SongWriter:
    """PCM [channels, n] in, audio events out: fake stereo for mono models, loudness normalization of
    the final channels, or peak normalization for models whose reference writes songs that way
    (`peak_normalize`), the container.

    Both normalizations need the whole song, so the PCM is held and encoded when the song is
    finished; otherwise each piece is encoded and sent as it comes."""

    def __init__(
        self,
        spec: SongSpec,
        sample_rate: int,
        channels: int,
        emit: EventSink,
        peak_normalize: bool = False,
        candidate: int = 0,
    ) -> None:
        """Write `spec`'s song of `channels` at `sample_rate`, sending each audio event to `emit`;
        `peak_normalize` (ignored when normalizing loudness) writes it peak-normalized; `candidate`
        is the number its audio events carry (which of several songs sampled together it is)."""
        self.channels = 2 if spec.stereo and channels == 1 else channels
        self.samples = 0
        self.encode_seconds = 0.0
        self._spec = spec
        self._sample_rate = sample_rate
        self._emit = emit
        self._encoder = StreamingEncoder(spec.audio_format, sample_rate, self.channels)
        self._stereo = FakeStereo(sample_rate) if self.channels != channels else None
        self._peak = peak_normalize and not spec.normalize_loudness
        self._candidate = candidate
        self._held: list[np.ndarray] = []

    @property
    def holds_song(self) -> bool:
        """True when the audio is sent only once the whole song is there (a normalization needs it)."""
        return self._spec.normalize_loudness or self._peak

    def add(self, pcm: np.ndarray) -> None:
        """Encode and send the next samples (held back to the end when normalizing)."""
        self.samples += pcm.shape[1]
        final = self._stereo(pcm) if self._stereo else pcm
        if self.holds_song:
            self._held.append(final)
        else:
            self._encode(final)

    def finish(self) -> bytes:
        """Send the rest of the file; return the whole file."""
        if self.holds_song:
            song = np.concatenate([np.zeros((self.channels, 0), np.float32), *self._held], axis=1)
            if self._peak:
                self._encode(peak_normalize_int16(song))
            else:
                self._encode(normalize_loudness(song, self._sample_rate, self._spec.target_lufs))
        started = time.perf_counter()
        self._send(self._encoder.close())
        self.encode_seconds += time.perf_counter() - started
        return self._encoder.data

    def _encode(self, pcm: np.ndarray) -> None:
        started = time.perf_counter()
        self._send(self._encoder.write(pcm))
        self.encode_seconds += time.perf_counter() - started

    def _send(self, pieces: list[tuple[int, bytes]]) -> None:
        for start, data in pieces:
            for cut in range(0, len(data), MAX_CHUNK_BYTES):
                chunk = song_pb2.AudioChunk(
                    offset=start + cut,
                    data=data[cut : cut + MAX_CHUNK_BYTES],
                    format=self._spec.audio_format,
                    candidate=self._candidate,
                )
                self._emit(song_pb2.SongEvent(audio=chunk))


class Pipeline:
    """Runs songs on the models of a router (stages in process or over gRPC)."""

    def __init__(self, router: Router, retry: RetryPolicy | None = None) -> None:
        """Route every song through `router`; `retry` governs resuming a lost generation stream."""
        self.router = router
        self.retry = retry or RetryPolicy()

    def run(
        self,
        spec: SongSpec,
        token: CancellationToken,
        emit: EventSink,
        kept: Sequence[Block] = (),
        keep: BlockSink | None = None,
    ) -> SongResult:
        """Generate one song, sending progress and audio events to `emit` as they happen.

        `kept` are blocks 0..k-1 of an earlier, interrupted run of the same song: generation resumes
        after them and the song comes out the same, unless the model's revision changed since (then
        it starts again, with a `resume_restarted` notice). `keep` receives each new block.
        """
        started = time.perf_counter()
        timings: dict[str, float] = {}
        model = self.router.get(spec.model)
        info = model.info(token, refresh=bool(kept))
        if kept and kept[-1].revision != info.revision:
            emit(_restart_notice(kept[-1].revision, info))
            kept = ()
        tokens, style, melody, reference = self._conditioning(model, info, spec, token, emit, timings)
        request = GenerationRequest(
            job_id=spec.job_id,
            tokens=tokens,
            style=style,
            melody=melody,
            seed=spec.seed,
            steps=spec.steps,
            cfg_strength=spec.cfg_strength,
            max_frames=math.ceil(spec.max_seconds * info.frame_rate) if spec.max_seconds else 0,
            seconds=spec.max_seconds,
            reference=reference,
        )
        song = SongGeneration(request, spec.options_field, spec.options)
        vocoder = model.info(token, stage="vocoder")
        peak = vocoder.peak_normalize and not spec.keep_raw_level
        frames = self._frame_stream(model, info, song, token, emit, timings, kept, keep)
        writers: list[SongWriter] = []
        files: list[bytes] = []
        timings["vocoder"] = 0.0
        for candidate, candidate_frames in itertools.groupby(frames, key=operator.itemgetter(0)):
            if candidate != len(writers):
                raise RuntimeError(f"the generation stage sent candidate {candidate} after {len(writers)}")
            writer = SongWriter(spec, vocoder.sample_rate, vocoder.channels, emit, peak, candidate)
            blocks = (block for _, block in candidate_frames)
            decode_started = time.perf_counter()
            for piece in model.vocoder.decode(blocks, spec.job_id, token):
                if piece.offset != writer.samples:
                    raise RuntimeError(
                        f"vocoder skipped samples: offset {piece.offset}, expected {writer.samples}"
                    )
                writer.add(piece.samples)
            timings["vocoder"] += time.perf_counter() - decode_started
            files.append(writer.finish())
            writers.append(writer)
        if not writers:
            raise RuntimeError("the generation stage ended the song without a block")
        timings["encode"] = sum(writer.encode_seconds for writer in writers)
        chart_set, osz = None, None
        if spec.charts is not None:
            charts_started = time.perf_counter()
            chart_set, osz = self._charts(spec, files[0], token, emit)
            timings["chart"] = time.perf_counter() - charts_started
        timings["total"] = time.perf_counter() - started
        summary = song_pb2.SongSummary(
            duration=duration(writers[0].samples / vocoder.sample_rate),
            sample_rate=vocoder.sample_rate,
            channels=writers[0].channels,
            format=spec.audio_format,
            size_bytes=len(files[0]),
            seed=spec.seed,
            model=model.name,
            model_revision=info.revision,
            stage_durations={stage: duration(seconds) for stage, seconds in timings.items()},
            charts=chart_set,
        )
        if len(files) > 1:
            summary.candidates.extend(
                song_pb2.CandidateSong(candidate=number, seed=spec.seed + number, size_bytes=len(data))
                for number, data in enumerate(files)
            )
        return SongResult(summary, files[0], tuple(files[1:]), osz)

    def _charts(
        self, spec: SongSpec, data: bytes, token: CancellationToken, emit: EventSink
    ) -> tuple[song_pb2.ChartSet, bytes]:
        """Charts for the finished song file `data`, with the chart stage's progress sent as `chart`
        progress events and the `.osz` as `osz` events; returns the summary and the `.osz`."""
        client = self.router.chart
        if client is None:
            raise chart_packing.NoChartStageError()
        info = self.router.chart_info(token, refresh=True)
        audio_filename = f"audio.{CONTAINERS[spec.audio_format].extension}"
        options = chart_packing.chart_options(spec.charts, spec.job_id, spec.seed, audio_filename)
        made = []
        for reply in chart_packing.from_stage(client.make_charts(options, data, token)):
            if reply.HasField("chart"):
                made.append(reply.chart)
            else:
                step = song_pb2.Progress(
                    stage="chart", step=reply.progress.step, total_steps=reply.progress.total_steps
                )
                emit(song_pb2.SongEvent(progress=step))
        osz = chart_packing.osz_archive(audio_filename, data, made)
        for start in range(0, len(osz), MAX_CHUNK_BYTES):
            chunk = song_pb2.OszChunk(offset=start, data=osz[start : start + MAX_CHUNK_BYTES])
            emit(song_pb2.SongEvent(osz=chunk))
        return chart_packing.chart_set(made, osz, chart_packing.osz_name(options), info), osz

    def _conditioning(
        self,
        model: RoutedModel,
        info: ModelInfo,
        spec: SongSpec,
        token: CancellationToken,
        emit: EventSink,
        timings: dict[str, float],
    ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """Tokenize the lyrics, embed the style (and melody) and encode the recording to edit or
        continue, all at once; a failure stops the others. Each runs in the caller's context, so its
        stage call belongs to the song's trace."""
        sibling = token.child()
        work: dict[str, tuple[str, Callable[[], np.ndarray]]] = {}
        if LYRICS in info.inputs and model.tokenizer is not None:
            tokenizer = model.tokenizer
            lyrics, family, seconds = spec.lyrics, info.family, spec.max_seconds
            work["tokens"] = (
                "tokenizer",
                lambda: _tokenize(lambda: tokenizer.tokenize(lyrics, family, seconds, spec.job_id, sibling)),
            )
        style = model.style
        if style is not None and spec.style_prompt is not None:
            prompt = spec.style_prompt
            work["style"] = (
                "style",
                lambda: _renamed(
                    {"prompt": "style_prompt"}, lambda: style.embed_text(prompt, spec.job_id, sibling)
                ),
            )
        if style is not None and spec.style_audio is not None:
            audio = spec.style_audio
            role = "melody" if MELODY_AUDIO in info.inputs else "style"
            crop = CROP_WHOLE if role == "melody" else style_crop(info.family)
            if role == "melody" or STYLE_AUDIO in info.inputs:
                work[role] = (
                    "style",
                    lambda: _upload(
                        "style_audio", lambda: style.embed_audio(audio, crop, spec.job_id, sibling)
                    ),
                )
        if spec.reference_audio is not None and REFERENCE_AUDIO in info.inputs:
            recording, vocoder = spec.reference_audio, model.vocoder
            work["reference"] = (
                "vocoder",
                lambda: _upload("reference_audio", lambda: vocoder.encode(recording, spec.job_id, sibling)),
            )

        def timed(stage: str, run: Callable[[], np.ndarray]) -> np.ndarray:
            began = time.perf_counter()
            try:
                result = run()
            except BaseException:
                sibling.cancel(f"{stage} failed")
                raise
            timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - began
            emit(song_pb2.SongEvent(progress=song_pb2.Progress(stage=stage)))
            return result

        with ThreadPoolExecutor(max_workers=max(1, len(work)), thread_name_prefix="conditioning") as pool:
            futures = {
                name: pool.submit(carry_context(timed), stage, run) for name, (stage, run) in work.items()
            }
        token.check()
        failures = [f.exception() for f in futures.values() if f.exception() is not None]
        genuine = [error for error in failures if not isinstance(error, CancelledError)]
        if failures:
            raise (genuine or failures)[0]
        results = {name: future.result() for name, future in futures.items()}
        return results.get("tokens"), results.get("style"), results.get("melody"), results.get("reference")

    def _frame_stream(
        self,
        model: RoutedModel,
        info: ModelInfo,
        song: SongGeneration,
        token: CancellationToken,
        emit: EventSink,
        timings: dict[str, float],
        kept: Sequence[Block],
        keep: BlockSink | None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Blocks' (candidate, frames) from a producer thread (in the caller's context, so the
        generation call belongs to the song's trace), so generation runs ahead of decoding."""
        handoff: queue.Queue = queue.Queue(maxsize=4)
        failure: list[BaseException] = []
        producer_token = token.child()

        def produce() -> None:
            began = time.perf_counter()
            try:
                for event in self._song_events(model, song, kept, keep, producer_token):
                    emit(_progress(event, info))
                    if isinstance(event, Block):
                        self._put(handoff, (event.candidate, event.frames), producer_token)
                timings["diffusion"] = time.perf_counter() - began
                self._put(handoff, _END, producer_token)
            except BaseException as exc:
                failure.append(exc)

        thread = threading.Thread(
            target=carry_context(produce), name=f"generation-{song.request.job_id}", daemon=True
        )
        thread.start()
        try:
            while True:
                try:
                    item = handoff.get(timeout=0.1)
                except queue.Empty:
                    if failure:
                        raise failure[0] from None
                    continue
                if item is _END:
                    return
                yield item
        finally:
            producer_token.cancel("the song stopped")
            thread.join(timeout=30)

    @staticmethod
    def _put(handoff: queue.Queue, item: object, token: CancellationToken) -> None:
        while True:
            token.check()
            try:
                handoff.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _song_events(
        self,
        model: RoutedModel,
        song: SongGeneration,
        kept: Sequence[Block],
        keep: BlockSink | None,
        token: CancellationToken,
    ) -> Iterator[Block | GenerationProgress]:
        """The kept blocks, then newly generated ones (each handed to `keep`) unless the song ended."""
        yield from kept
        if kept and kept[-1].final:
            return
        for event in self._events_with_resume(model, song, list(kept), token):
            if keep is not None and isinstance(event, Block):
                keep(event)
            yield event

    def _events_with_resume(
        self, model: RoutedModel, song: SongGeneration, done: list[Block], token: CancellationToken
    ) -> Iterator[Block | GenerationProgress]:
        """The song's events; an UNAVAILABLE generation stage is retried from the last finished block."""
        failures = 0
        lost_since = 0.0
        while True:
            prefix = tuple(block.frames for block in done)
            revision = done[-1].revision if done else ""
            attempt = replace(song, request=replace(song.request, prefix=prefix), prefix_revision=revision)
            try:
                for event in model.generation.generate(attempt, token):
                    if isinstance(event, Block):
                        done.append(event)
                        failures = 0
                    yield event
                return
            except InvalidArgumentError as exc:
                raise request_fields(exc, GENERATION_TO_SONG_FIELDS) from exc
            except UnavailableError as exc:
                now = time.monotonic()
                lost_since = lost_since if failures else now
                failures += 1
                if now - lost_since >= self.retry.budget_s:
                    raise
                backoff = min(self.retry.first_backoff_s * 2 ** (failures - 1), self.retry.max_backoff_s)
                log.warning(
                    "generation unavailable after %d blocks (%s); resuming in %.1f s", len(done), exc, backoff
                )
                token.wait(backoff)


def _progress(event: Block | GenerationProgress, info: ModelInfo) -> song_pb2.SongEvent:
    if isinstance(event, GenerationProgress):
        progress = song_pb2.Progress(stage="diffusion", step=event.step, total_steps=event.total_steps)
    else:
        seconds = event.frames_done / info.frame_rate if info.frame_rate else 0.0
        progress = song_pb2.Progress(
            stage="diffusion",
            blocks_done=event.index + 1,
            max_blocks=event.max_blocks,
            generated=duration(seconds),
        )
    return song_pb2.SongEvent(progress=progress)


def _restart_notice(kept_revision: str, info: ModelInfo) -> song_pb2.SongEvent:
    message = (
        f"the kept blocks were made by revision {kept_revision[:12]} of {info.name}; the stage now "
        f"hosts revision {info.revision[:12]}, so the song starts again from the beginning"
    )
    log.warning(message)
    return song_pb2.SongEvent(notice=song_pb2.Notice(code=RESUME_RESTARTED, message=message))
