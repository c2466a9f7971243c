"""One song through the four stages, overlapped: tokenizer and style encoder in parallel, then
diffusion streaming blocks into the vocoder streaming PCM into the audio encoder and out.

If the diffusion stage becomes unavailable mid-song (a replica died or restarted), sampling resumes
from the last completed block by sending the blocks so far as the prefix; the sampler is
deterministic, so the finished song is identical to an uninterrupted one. A caller that kept the
blocks of an earlier, interrupted run (the job store does) passes them in the same way.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from gateway.audio import FakeStereo, StreamingEncoder, normalize_loudness
from gateway.stages import BLOCK_FRAMES, FRAMES_PER_SECOND, LatentBlock, LatentRequest, Stages
from services.runtime.cancellation import CancellationToken
from services.runtime.codec import MAX_CHUNK_BYTES
from services.runtime.errors import CancelledError, UnavailableError
from songsmith.v1 import song_pb2

log = logging.getLogger(__name__)

EventSink = Callable[[song_pb2.SongEvent], None]
BlockSink = Callable[[LatentBlock], None]
_END = object()


@dataclass(frozen=True)
class SongSpec:
    """A validated song request with every default filled in."""

    job_id: str
    lyrics: str
    style_prompt: str | None
    style_audio: bytes | None
    seed: int
    steps: int
    cfg_strength: float
    max_frames: int
    audio_format: int
    stereo: bool
    normalize_loudness: bool
    target_lufs: float


@dataclass(frozen=True)
class SongResult:
    """The finished song: its summary and the encoded file."""

    summary: song_pb2.SongSummary
    data: bytes


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a lost diffusion stream is resumed."""

    attempts: int = 8
    first_backoff_s: float = 0.5
    max_backoff_s: float = 5.0


class _SongWriter:
    """PCM [channels, n] in, audio events out: fake stereo, loudness normalization of the final
    channels, the container."""

    def __init__(self, spec: SongSpec, sample_rate: int, emit: EventSink) -> None:
        self.channels = 2 if spec.stereo else 1
        self.samples = 0
        self.encode_seconds = 0.0
        self._spec = spec
        self._sample_rate = sample_rate
        self._emit = emit
        self._encoder = StreamingEncoder(spec.audio_format, sample_rate, self.channels)
        self._stereo = FakeStereo(sample_rate) if spec.stereo else None
        self._held: list[np.ndarray] = []

    def add(self, pcm: np.ndarray) -> None:
        """Encode and send the next samples (held back to the end when normalizing loudness)."""
        self.samples += pcm.shape[1]
        final = self._stereo(pcm) if self._stereo else pcm
        if self._spec.normalize_loudness:
            self._held.append(final)
        else:
            self._encode(final)

    def finish(self) -> bytes:
        """Send the rest of the file; return the whole file."""
        if self._spec.normalize_loudness:
            song = np.concatenate([np.zeros((self.channels, 0), np.float32), *self._held], axis=1)
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
                    offset=start + cut, data=data[cut : cut + MAX_CHUNK_BYTES], format=self._spec.audio_format
                )
                self._emit(song_pb2.SongEvent(audio=chunk))


class Pipeline:
    """Runs songs over a `Stages` implementation (in-process or gRPC)."""

    def __init__(self, stages: Stages, retry: RetryPolicy | None = None) -> None:
        """Use `stages` for every song; `retry` governs resuming a lost diffusion stream."""
        self.stages = stages
        self.retry = retry or RetryPolicy()

    def run(
        self,
        spec: SongSpec,
        token: CancellationToken,
        emit: EventSink,
        kept: Sequence[LatentBlock] = (),
        keep: BlockSink | None = None,
    ) -> SongResult:
        """Generate one song, sending progress and audio events to `emit` as they happen.

        `kept` are blocks 0..k-1 of an earlier, interrupted run of the same song: sampling resumes
        after them and the song comes out the same. `keep` receives each newly sampled block.
        """
        started = time.perf_counter()
        timings: dict[str, float] = {}
        tokens, style = self._conditioning(spec, token, emit, timings)
        request = LatentRequest(
            spec.job_id, tokens, style, spec.seed, spec.steps, spec.cfg_strength, spec.max_frames
        )
        writer = _SongWriter(spec, self.stages.sample_rate, emit)
        latents = self._latent_stream(request, token, emit, timings, kept, keep)
        decode_started = time.perf_counter()
        for piece in self.stages.decode(latents, spec.job_id, token):
            if piece.offset != writer.samples:
                raise RuntimeError(
                    f"vocoder skipped samples: offset {piece.offset}, expected {writer.samples}"
                )
            writer.add(piece.samples)
        timings["vocoder"] = time.perf_counter() - decode_started
        data = writer.finish()
        timings["encode"] = writer.encode_seconds
        timings["total"] = time.perf_counter() - started
        summary = song_pb2.SongSummary(
            duration_seconds=writer.samples / self.stages.sample_rate,
            sample_rate=self.stages.sample_rate,
            channels=writer.channels,
            format=spec.audio_format,
            size_bytes=len(data),
            seed=spec.seed,
            model=self.stages.model_name,
            stage_seconds=timings,
        )
        return SongResult(summary, data)

    def _conditioning(
        self, spec: SongSpec, token: CancellationToken, emit: EventSink, timings: dict[str, float]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Tokenize the lyrics and embed the style at the same time; a failure stops the other."""
        sibling = token.child()

        def timed(stage: str, work: Callable[[], np.ndarray]) -> np.ndarray:
            began = time.perf_counter()
            try:
                result = work()
            except BaseException:
                sibling.cancel(f"{stage} failed")
                raise
            timings[stage] = time.perf_counter() - began
            emit(song_pb2.SongEvent(progress=song_pb2.Progress(stage=stage)))
            return result

        if spec.style_audio is not None:
            embed = lambda: self.stages.embed_audio(spec.style_audio, spec.job_id, sibling)  # noqa: E731
        else:
            embed = lambda: self.stages.embed_text(spec.style_prompt or "", spec.job_id, sibling)  # noqa: E731
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="conditioning") as pool:
            tokens = pool.submit(
                timed, "tokenizer", lambda: self.stages.tokenize(spec.lyrics, spec.job_id, sibling)
            )
            style = pool.submit(timed, "style", embed)
        token.check()
        failures = [f.exception() for f in (tokens, style) if f.exception() is not None]
        genuine = [error for error in failures if not isinstance(error, CancelledError)]
        if failures:
            raise (genuine or failures)[0]
        return tokens.result(), style.result()

    def _latent_stream(
        self,
        request: LatentRequest,
        token: CancellationToken,
        emit: EventSink,
        timings: dict[str, float],
        kept: Sequence[LatentBlock],
        keep: BlockSink | None,
    ) -> Iterator[np.ndarray]:
        """Latent blocks from a producer thread, so sampling runs ahead of decoding."""
        handoff: queue.Queue = queue.Queue(maxsize=4)
        failure: list[BaseException] = []
        producer_token = token.child()

        def produce() -> None:
            began = time.perf_counter()
            try:
                for block in self._song_blocks(request, kept, keep, producer_token):
                    seconds = (block.index * BLOCK_FRAMES + len(block.latents)) / FRAMES_PER_SECOND
                    emit(
                        song_pb2.SongEvent(
                            progress=song_pb2.Progress(
                                stage="diffusion",
                                blocks_done=block.index + 1,
                                max_blocks=block.max_blocks,
                                seconds_generated=seconds,
                            )
                        )
                    )
                    self._put(handoff, block.latents, producer_token)
                timings["diffusion"] = time.perf_counter() - began
                self._put(handoff, _END, producer_token)
            except BaseException as exc:
                failure.append(exc)

        thread = threading.Thread(target=produce, name=f"diffusion-{request.job_id}", daemon=True)
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

    def _song_blocks(
        self,
        request: LatentRequest,
        kept: Sequence[LatentBlock],
        keep: BlockSink | None,
        token: CancellationToken,
    ) -> Iterator[LatentBlock]:
        """The kept blocks, then newly sampled ones (each handed to `keep`) unless the song ended."""
        yield from kept
        if kept and kept[-1].final:
            return
        resumed = replace(request, prefix=tuple(block.latents for block in kept))
        for block in self._blocks_with_resume(resumed, token):
            if keep is not None:
                keep(block)
            yield block

    def _blocks_with_resume(self, request: LatentRequest, token: CancellationToken) -> Iterator[LatentBlock]:
        """The song's blocks; an UNAVAILABLE diffusion stage is retried from the last finished block."""
        done: list[np.ndarray] = list(request.prefix)
        failures = 0
        while True:
            try:
                for block in self.stages.generate_latents(replace(request, prefix=tuple(done)), token):
                    done.append(block.latents)
                    failures = 0
                    yield block
                return
            except UnavailableError as exc:
                failures += 1
                if failures >= self.retry.attempts:
                    raise
                backoff = min(self.retry.first_backoff_s * 2 ** (failures - 1), self.retry.max_backoff_s)
                log.warning(
                    "diffusion unavailable after %d blocks (%s); resuming in %.1f s", len(done), exc, backoff
                )
                token.wait(backoff)
