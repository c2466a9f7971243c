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

Every stage call of a song (tokenizer, style, recording encoder, generation, vocoder) is retried by
one policy, `RetryPolicy`: a stage at capacity (RESOURCE_EXHAUSTED) is asked again after the delay
its RetryInfo gives, for as long as the song's deadline allows; a stage that is unreachable or lost
mid-call (UNAVAILABLE) is asked again with backoff until `budget_s` pass without progress.

If the generation stage is lost mid-song (a replica died or restarted), generation resumes from the
last completed block by sending the blocks so far as the prefix; if the vocoder is lost, the decode
starts again on another call with the song's frames from block 0 and only the samples the song does
not have yet come back (the vocoder skips the windows that make only earlier ones). Both stages are
deterministic, so the finished song is identical to an uninterrupted one. A caller that kept the
blocks of an earlier, interrupted run (the job store does) passes them in the same way, unless the
model's revision has changed since: then the song starts again from block 0, with a notice.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np
from google.protobuf.duration_pb2 import Duration

from gateway import charts as chart_packing
from gateway.audio import CONTAINERS, FakeStereo, StreamingEncoder, normalize_loudness, peak_normalize_int16
from gateway.results import MemoryResult, ResultSink
from gateway.router import RoutedModel, Router
from gateway.stages import Block, SongGeneration
from services.diffusion.engine import GenerationProgress, GenerationRequest
from services.diffusion.families import GENERATION_FAMILIES
from services.runtime.cancellation import CancellationToken
from services.runtime.codec import MAX_CHUNK_BYTES
from services.runtime.errors import (
    CancelledError,
    FieldViolation,
    InvalidArgumentError,
    ResourceExhaustedError,
    ServiceError,
    UnavailableError,
)
from services.runtime.model_info import LYRICS, MELODY_AUDIO, REFERENCE_AUDIO, STYLE_AUDIO, ModelInfo
from services.runtime.tracing import carry_context
from services.style.engine import CROP_WHOLE, CropMode
from songsmith.v1 import song_pb2

log = logging.getLogger(__name__)

EventSink = Callable[[song_pb2.SongEvent], None]
BlockSink = Callable[[Block], None]
RESUME_RESTARTED = "resume_restarted"
# A stage's retry delay is waited at least this long, and up to this fraction longer.
MIN_RETRY_DELAY_S = 0.1
RETRY_JITTER = 0.2
T = TypeVar("T")
_POLL_S = 0.1


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
    """The finished song: its summary (every candidate's file went to the run's outputs and out as
    audio events) and, when charts were asked for, the `.osz`."""

    summary: song_pb2.SongSummary
    osz: bytes | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """How every stage call of a song is retried, whichever the stage.

    RESOURCE_EXHAUSTED (a stage at capacity): wait the delay the stage's RetryInfo asks for (a
    little more, so refused songs do not all come back at once) and ask again; the song's deadline is
    the only limit. UNAVAILABLE (a stage unreachable, loading, draining, or lost mid-stream): ask
    again with backoff from `first_backoff_s` up to `max_backoff_s` until `budget_s` have passed
    without progress (a new block, new audio, an answer); streams resume where they stopped. The
    default budget outlasts a stage's cold start with its model load (a pod rescheduled, a process
    restarted under load), so a song survives a replica's restart.
    """

    budget_s: float = 300.0
    first_backoff_s: float = 0.5
    max_backoff_s: float = 5.0

    def attempts(self, stage: str, token: CancellationToken) -> StageAttempts:
        """The failure bookkeeping of one stage call (or stream) of a song."""
        return StageAttempts(self, stage, token)

    def call(self, stage: str, token: CancellationToken, run: Callable[[], T]) -> T:
        """`run()`, one call to `stage`, retried as the policy says."""
        attempts = self.attempts(stage, token)
        while True:
            try:
                return run()
            except ServiceError as exc:
                attempts.wait_after(exc)


class StageAttempts:
    """The failures of one stage call so far under a RetryPolicy: how long to wait before the next
    attempt, or that there is none."""

    def __init__(self, policy: RetryPolicy, stage: str, token: CancellationToken) -> None:
        """Count `stage`'s failures for the song guarded by `token` (its deadline bounds every wait)."""
        self._policy = policy
        self._stage = stage
        self._token = token
        self._lost_since: float | None = None
        self._failures = 0

    def progressed(self) -> None:
        """The stage answered or sent something: the UNAVAILABLE budget starts afresh."""
        self._lost_since = None
        self._failures = 0

    def wait_after(self, error: ServiceError) -> None:
        """Wait before the next attempt after `error`; raise `error` when it is not to be retried
        (any other status, the budget spent) and the token's error when the song stops meanwhile."""
        policy = self._policy
        if isinstance(error, ResourceExhaustedError):
            delay = max(error.retry_after_s, MIN_RETRY_DELAY_S) * random.uniform(1.0, 1.0 + RETRY_JITTER)
            log.info("%s is at capacity (%s); asking again in %.1f s", self._stage, error.message, delay)
            self._token.wait(delay)
            return
        if not isinstance(error, UnavailableError):
            raise error
        now = time.monotonic()
        if self._lost_since is None:
            self._lost_since = now
        self._failures += 1
        if now - self._lost_since >= policy.budget_s:
            raise error
        backoff = min(policy.first_backoff_s * 2 ** (self._failures - 1), policy.max_backoff_s)
        log.warning("%s unavailable (%s); trying again in %.1f s", self._stage, error.message, backoff)
        self._token.wait(backoff)


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
    """PCM [channels, n] in, audio events and the file out: fake stereo for mono models, loudness
    normalization of the final channels, or peak normalization for models whose reference writes
    songs that way (`peak_normalize`), the container. Each encoded piece goes to `output` (when
    given) and out as an event as soon as it is made; none is kept.

    Both normalizations need the whole song, so its PCM is held and encoded when the song is
    finished; otherwise each piece is encoded and sent as it comes."""

    def __init__(
        self,
        spec: SongSpec,
        sample_rate: int,
        channels: int,
        emit: EventSink,
        peak_normalize: bool = False,
        candidate: int = 0,
        output: ResultSink | None = None,
    ) -> None:
        """Write `spec`'s song of `channels` at `sample_rate`, sending each audio event to `emit`
        and each encoded piece to `output`; `peak_normalize` (ignored when normalizing loudness)
        writes it peak-normalized; `candidate` is the number its audio events carry (which of several
        songs sampled together it is)."""
        self.channels = 2 if spec.stereo and channels == 1 else channels
        self.samples = 0
        self.size_bytes = 0
        self.encode_seconds = 0.0
        self._spec = spec
        self._sample_rate = sample_rate
        self._emit = emit
        self._output = output
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

    def finish(self) -> None:
        """Send the rest of the file."""
        if self.holds_song:
            song = np.concatenate([np.zeros((self.channels, 0), np.float32), *self._held], axis=1)
            self._held = []
            if self._peak:
                self._encode(peak_normalize_int16(song))
            else:
                self._encode(normalize_loudness(song, self._sample_rate, self._spec.target_lufs))
        started = time.perf_counter()
        self._send(self._encoder.close())
        self.encode_seconds += time.perf_counter() - started

    def _encode(self, pcm: np.ndarray) -> None:
        started = time.perf_counter()
        self._send(self._encoder.write(pcm))
        self.encode_seconds += time.perf_counter() - started

    def _send(self, pieces: list[tuple[int, bytes]]) -> None:
        for start, data in pieces:
            if self._output is not None:
                self._output.write_at(start, data)
            self.size_bytes = max(self.size_bytes, start + len(data))
            for cut in range(0, len(data), MAX_CHUNK_BYTES):
                chunk = song_pb2.AudioChunk(
                    offset=start + cut,
                    data=data[cut : cut + MAX_CHUNK_BYTES],
                    format=self._spec.audio_format,
                    candidate=self._candidate,
                )
                self._emit(song_pb2.SongEvent(audio=chunk))


class _FrameFeed:
    """A song's frames, block by block, from the generation thread to the decode: every block is
    kept until the song ends (a few KB per block), so a decode that is lost can read them again
    from block 0. Readers wait for the next block; a generation failure reaches them."""

    def __init__(self) -> None:
        self._frames: list[np.ndarray] = []
        self._ended = False
        self._failure: BaseException | None = None
        self._changed = threading.Condition()

    def add(self, frames: np.ndarray) -> None:
        """The next block's frames."""
        with self._changed:
            self._frames.append(frames)
            self._changed.notify_all()

    def end(self) -> None:
        """No more blocks: the song is complete."""
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def fail(self, failure: BaseException) -> None:
        """Generation failed: readers get `failure` once they have read every block before it."""
        with self._changed:
            self._failure = failure
            self._changed.notify_all()

    def wait_for_first(self, token: CancellationToken) -> None:
        """Return once the first block is there (or generation ended or failed), so that no decode
        call holds a vocoder's slot while the song waits for the generation stage."""
        with self._changed:
            while not self._frames and not self._ended and self._failure is None:
                self._changed.wait(_POLL_S)
                token.check()

    def check(self) -> None:
        """Raise generation's failure, if it failed."""
        with self._changed:
            if self._failure is not None:
                raise self._failure

    def read(self, token: CancellationToken) -> Iterator[np.ndarray]:
        """Every block's frames from block 0, waiting for each; ends after the last block, raises
        generation's failure, stops when `token` does."""
        index = 0
        while True:
            with self._changed:
                while index == len(self._frames) and not self._ended and self._failure is None:
                    self._changed.wait(_POLL_S)
                    token.check()
                if index < len(self._frames):
                    frames = self._frames[index]
                elif self._failure is not None:
                    raise self._failure
                else:
                    return
            index += 1
            yield frames


class _CandidateFeeds:
    """The frame feeds of a request's candidates (one feed for a single song), each opened when the
    generation stage sends that candidate's first block; candidates come one after another."""

    def __init__(self) -> None:
        self._feeds: list[_FrameFeed] = []
        self._ended = False
        self._failure: BaseException | None = None
        self._changed = threading.Condition()

    def add(self, candidate: int, frames: np.ndarray) -> None:
        """The next block of `candidate` (the current one, or the next, which ends the current)."""
        with self._changed:
            if candidate == len(self._feeds):
                if self._feeds:
                    self._feeds[-1].end()
                self._feeds.append(_FrameFeed())
                self._changed.notify_all()
            elif candidate != len(self._feeds) - 1:
                raise RuntimeError(
                    f"the generation stage sent candidate {candidate} after {len(self._feeds) - 1}"
                )
            feed = self._feeds[-1]
        feed.add(frames)

    def end(self) -> None:
        """No more blocks of any candidate."""
        with self._changed:
            if self._feeds:
                self._feeds[-1].end()
            self._ended = True
            self._changed.notify_all()

    def fail(self, failure: BaseException) -> None:
        """Generation failed: the current candidate's reader, and anyone waiting for the next one,
        get `failure`."""
        with self._changed:
            if self._feeds:
                self._feeds[-1].fail(failure)
            self._failure = failure
            self._changed.notify_all()

    def get(self, candidate: int, token: CancellationToken) -> _FrameFeed | None:
        """`candidate`'s feed once its first block is there; None when the song has no such
        candidate; generation's failure when it failed first."""
        with self._changed:
            while candidate >= len(self._feeds) and not self._ended and self._failure is None:
                self._changed.wait(_POLL_S)
                token.check()
            if candidate < len(self._feeds):
                return self._feeds[candidate]
            if self._failure is not None:
                raise self._failure
            return None


class _Tee:
    """Two result sinks written alike (`second` may be None)."""

    def __init__(self, first: ResultSink, second: ResultSink | None) -> None:
        self._sinks = [sink for sink in (first, second) if sink is not None]

    def write_at(self, offset: int, data: bytes) -> None:
        """Write `data` at `offset` of every sink."""
        for sink in self._sinks:
            sink.write_at(offset, data)


class Pipeline:
    """Runs songs on the models of a router (stages in process or over gRPC)."""

    def __init__(self, router: Router, retry: RetryPolicy | None = None) -> None:
        """Route every song through `router`; `retry` governs how every stage call is retried."""
        self.router = router
        self.retry = retry or RetryPolicy()

    def run(
        self,
        spec: SongSpec,
        token: CancellationToken,
        emit: EventSink,
        kept: Sequence[Block] = (),
        keep: BlockSink | None = None,
        outputs: Callable[[int], ResultSink] | None = None,
    ) -> SongResult:
        """Generate one song, sending progress and audio events to `emit` as they happen and each
        candidate's encoded file, piece by piece, to `outputs(candidate)` (called once per candidate,
        in order; candidate 0 alone for a single song).

        `kept` are blocks 0..k-1 of an earlier, interrupted run of the same song: generation resumes
        after them and the song comes out the same, unless the model's revision changed since (then
        it starts again, with a `resume_restarted` notice). `keep` receives each new block.
        """
        started = time.perf_counter()
        timings: dict[str, float] = {}
        model = self.router.get(spec.model)
        info = self.retry.call("diffusion", token, lambda: model.info(token, refresh=bool(kept)))
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
        vocoder = self.retry.call("vocoder", token, lambda: model.info(token, stage="vocoder"))
        peak = vocoder.peak_normalize and not spec.keep_raw_level
        charted = MemoryResult() if spec.charts is not None else None
        feeds = _CandidateFeeds()
        generation = token.child()
        producer = threading.Thread(
            target=carry_context(self._produce),
            args=(model, info, song, generation, emit, timings, kept, keep, feeds),
            name=f"generation-{spec.job_id}",
            daemon=True,
        )
        writers: list[SongWriter] = []
        decode_started = time.perf_counter()
        producer.start()
        try:
            while (feed := feeds.get(len(writers), token)) is not None:
                candidate = len(writers)
                output = outputs(candidate) if outputs is not None else None
                if candidate == 0 and charted is not None:
                    output = _Tee(charted, output)
                writer = SongWriter(
                    spec, vocoder.sample_rate, vocoder.channels, emit, peak, candidate, output
                )
                self._decode(model, spec.job_id, feed, writer, token)
                writer.finish()
                writers.append(writer)
        finally:
            generation.cancel("the song stopped")
            producer.join(timeout=30)
        if not writers:
            raise RuntimeError("the generation stage ended the song without a block")
        timings["vocoder"] = time.perf_counter() - decode_started
        timings["encode"] = sum(writer.encode_seconds for writer in writers)
        chart_set, osz = None, None
        if charted is not None:
            charts_started = time.perf_counter()
            chart_set, osz = self._charts(spec, charted.data, token, emit)
            timings["chart"] = time.perf_counter() - charts_started
        timings["total"] = time.perf_counter() - started
        summary = song_pb2.SongSummary(
            duration=duration(writers[0].samples / vocoder.sample_rate),
            sample_rate=vocoder.sample_rate,
            channels=writers[0].channels,
            format=spec.audio_format,
            size_bytes=writers[0].size_bytes,
            seed=spec.seed,
            model=model.name,
            model_revision=info.revision,
            stage_durations={stage: duration(seconds) for stage, seconds in timings.items()},
            charts=chart_set,
        )
        if len(writers) > 1:
            summary.candidates.extend(
                song_pb2.CandidateSong(
                    candidate=number, seed=spec.seed + number, size_bytes=writer.size_bytes
                )
                for number, writer in enumerate(writers)
            )
        return SongResult(summary, osz)

    def _charts(
        self, spec: SongSpec, data: bytes, token: CancellationToken, emit: EventSink
    ) -> tuple[song_pb2.ChartSet, bytes]:
        """Charts for the finished song file `data`, with the chart stage's progress sent as `chart`
        progress events and the `.osz` as `osz` events; returns the summary and the `.osz`."""
        client = self.router.chart
        if client is None:
            raise chart_packing.NoChartStageError()
        info = self.retry.call("chart", token, lambda: self.router.chart_info(token, refresh=True))
        audio_filename = f"audio.{CONTAINERS[spec.audio_format].extension}"
        options = chart_packing.chart_options(spec.charts, spec.job_id, spec.seed, audio_filename)

        def make_charts() -> list:
            made = []
            for reply in chart_packing.from_stage(client.make_charts(options, data, token)):
                if reply.HasField("chart"):
                    made.append(reply.chart)
                else:
                    step = song_pb2.Progress(
                        stage="chart", step=reply.progress.step, total_steps=reply.progress.total_steps
                    )
                    emit(song_pb2.SongEvent(progress=step))
            return made

        made = self.retry.call("chart", token, make_charts)
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
                result = self.retry.call(stage, sibling, run)
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

    def _produce(
        self,
        model: RoutedModel,
        info: ModelInfo,
        song: SongGeneration,
        token: CancellationToken,
        emit: EventSink,
        timings: dict[str, float],
        kept: Sequence[Block],
        keep: BlockSink | None,
        feeds: _CandidateFeeds,
    ) -> None:
        """The generation thread: every block's frames into its candidate's feed as they come, so
        generation runs ahead of decoding; a failure ends the feeds with it."""
        began = time.perf_counter()
        try:
            for event in self._song_events(model, song, kept, keep, token):
                emit(_progress(event, info))
                if isinstance(event, Block):
                    feeds.add(event.candidate, event.frames)
            timings["diffusion"] = time.perf_counter() - began
            feeds.end()
        except BaseException as exc:
            feeds.fail(exc)

    def _decode(
        self, model: RoutedModel, job_id: str, feed: _FrameFeed, writer: SongWriter, token: CancellationToken
    ) -> None:
        """Decode the feed's frames into `writer`; a lost vocoder call starts again (under the retry
        policy) with the frames from block 0, asking only for the samples the writer lacks. Only the
        vocoder's own failures are retried, never the writer's."""
        attempts = self.retry.attempts("vocoder", token)
        feed.wait_for_first(token)
        while True:
            attempt = token.child()
            pieces = model.vocoder.decode(feed.read(attempt), job_id, attempt, writer.samples)
            try:
                while True:
                    try:
                        piece = next(pieces)
                    except StopIteration:
                        return
                    except ServiceError as exc:
                        failure = exc
                        break
                    if piece.offset != writer.samples:
                        raise RuntimeError(
                            f"vocoder skipped samples: offset {piece.offset}, expected {writer.samples}"
                        )
                    writer.add(piece.samples)
                    attempts.progressed()
            finally:
                attempt.cancel("the decode call ended")
            token.check()
            feed.check()
            attempts.wait_after(failure)
            log.info("decoding again from sample %d", writer.samples)

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
        """The song's events; a generation stage that is lost or at capacity is asked again (under the
        retry policy) from the last finished block."""
        attempts = self.retry.attempts("diffusion", token)
        while True:
            prefix = tuple(block.frames for block in done)
            revision = done[-1].revision if done else ""
            attempt = replace(song, request=replace(song.request, prefix=prefix), prefix_revision=revision)
            try:
                for event in model.generation.generate(attempt, token):
                    if isinstance(event, Block):
                        done.append(event)
                        attempts.progressed()
                    yield event
                return
            except InvalidArgumentError as exc:
                raise request_fields(exc, GENERATION_TO_SONG_FIELDS) from exc
            except ServiceError as exc:
                attempts.wait_after(exc)
                log.info("resuming generation after %d blocks", len(done))


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
