"""Continuous batching for the generation stage: the songs in flight share every forward pass.

Each song's `engine.generate` runs in its caller's thread (one gRPC thread per song); all of them
hand their song to one `ContinuousBatcher` owned by the engine. The batcher's scheduler thread runs
the family's `BatchModel`: before every batched step it lets waiting songs join (up to `max_batch`
songs in the batch), drops songs whose caller cancelled, ran out of time or went away, and after the
step hands each song the events it produced. A song leaves the batch as soon as it ends, so nobody
waits for the slowest song; a new song joins before the next step, at its own block 0.

The batcher knows nothing about a family's arithmetic: the family decides what one step does for
each song (an Euler step, a re-encode, an autoregressive token...), keeps each song's state, and
keeps the songs independent of each other, so a song's numbers do not depend on who else is in the
batch. Songs beyond `max_batch + max_queue` are turned away at once with RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from services.diffusion.engine import GeneratedBlock, GenerationEvent
from services.runtime.cancellation import CancellationToken
from services.runtime.errors import InternalError, ResourceExhaustedError, ServiceError
from services.runtime.metrics import BATCH_SIZE, BATCH_STEP

log = logging.getLogger(__name__)

SongT = TypeVar("SongT")

# How often a caller waiting for its song's next event looks at its own token.
_POLL_S = 0.05


class BatchModel(Protocol[SongT]):
    """What a family implements to be batched: a song state type and three calls, all made from
    the batcher's scheduler thread only (so the family needs no locks)."""

    def join(self, songs: Sequence[SongT]) -> None:
        """Take `songs` into the batch: give them their place and encode their conditioning.
        If it raises, each of them is handed to `leave` and told the error."""
        ...

    def step(self, songs: Sequence[SongT]) -> Sequence[list[GenerationEvent]]:
        """Advance every song of the batch by one batched step; return, per song in the same order,
        the events it produced (often none). A `GeneratedBlock` with `final` set ends the song."""
        ...

    def leave(self, song: SongT) -> None:
        """Release the song's place (it ended, failed or was cancelled); the others go on."""
        ...


@dataclass(frozen=True)
class BatchLimits:
    """How many songs are sampled together, how many may wait to join, and the retry delay
    suggested to callers turned away."""

    max_batch: int = 8
    max_queue: int = 16
    retry_after_s: float = 1.0

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_queue < 0:
            raise ValueError("max_batch must be >= 1 and max_queue >= 0")


_END = object()


@dataclass(eq=False)
class _Entry(Generic[SongT]):
    """One submitted song: the family's state, the caller's token and the caller's inbox."""

    song: SongT
    token: CancellationToken
    inbox: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    abandoned: threading.Event = field(default_factory=threading.Event)

    def stop_reason(self) -> ServiceError | None:
        """Why the song must stop now (cancelled, past its deadline, caller gone), or None."""
        if self.abandoned.is_set():
            return InternalError("the caller stopped reading the song")
        try:
            self.token.check()
        except ServiceError as error:
            return error
        return None


@dataclass
class BatchStats:
    """Counters a benchmark or a test reads: steps run, the largest batch seen, songs joined."""

    steps: int = 0
    largest_batch: int = 0
    joined: int = 0
    batch_sizes: collections.Counter = field(default_factory=collections.Counter)


class ContinuousBatcher(Generic[SongT]):
    """Runs a `BatchModel` over every song submitted to it, from one scheduler thread."""

    def __init__(self, model: BatchModel[SongT], limits: BatchLimits, name: str = "generation") -> None:
        """Nothing runs until the first `submit`; the scheduler thread is a daemon."""
        self._model = model
        self._limits = limits
        self._name = name
        self._changed = threading.Condition()
        self._waiting: collections.deque[_Entry[SongT]] = collections.deque()
        self._active: list[_Entry[SongT]] = []
        self._in_flight = 0
        self._closed = False
        self._thread: threading.Thread | None = None
        self.stats = BatchStats()

    @property
    def limits(self) -> BatchLimits:
        """The batch and queue bounds."""
        return self._limits

    def submit(self, song: SongT, token: CancellationToken | None = None) -> Iterator[GenerationEvent]:
        """Queue `song` to join the batch; return the iterator over its events.

        Raises ResourceExhaustedError at once when `max_batch` songs are sampled and `max_queue`
        wait. The iterator raises the song's error (CancelledError, DeadlineExceededError, the
        family's errors); closing it early takes the song out of the batch.
        """
        entry = _Entry(song, token or CancellationToken())
        with self._changed:
            if self._closed:
                raise InternalError(f"the {self._name} batcher is closed")
            limit = self._limits.max_batch + self._limits.max_queue
            if self._in_flight >= limit:
                raise ResourceExhaustedError(
                    f"{self._name} is at capacity ({self._limits.max_batch} songs sampled, "
                    f"{self._limits.max_queue} waiting); retry later",
                    retry_after_s=self._limits.retry_after_s,
                )
            self._in_flight += 1
            self._waiting.append(entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"{self._name}-batcher", daemon=True)
                self._thread.start()
            self._changed.notify()
        return self._events(entry)

    def close(self) -> None:
        """Stop the scheduler after its current step; songs still in flight end with an error."""
        with self._changed:
            self._closed = True
            self._changed.notify()
        if self._thread is not None:
            self._thread.join()

    def _events(self, entry: _Entry[SongT]) -> Iterator[GenerationEvent]:
        try:
            while True:
                try:
                    item = entry.inbox.get(timeout=_POLL_S)
                except queue.Empty:
                    entry.token.check()
                    continue
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            entry.abandoned.set()
            with self._changed:
                self._changed.notify()

    def _finish(self, entry: _Entry[SongT], error: BaseException | None = None) -> None:
        """Tell the caller its song is over (with `error` if it failed) and free its place."""
        entry.inbox.put(_END if error is None else error)
        with self._changed:
            self._in_flight -= 1

    def _admit(self) -> list[_Entry[SongT]] | None:
        """Wait until there is work; take the waiting songs that fit into the batch (None once the
        batcher is closed)."""
        with self._changed:
            while not self._closed and not self._waiting and not self._active:
                self._changed.wait()
            if self._closed:
                return None
            for entry in list(self._waiting):
                reason = entry.stop_reason()
                if reason is not None:
                    self._waiting.remove(entry)
                    self._in_flight -= 1
                    entry.inbox.put(reason)
            room = self._limits.max_batch - len(self._active)
            return [self._waiting.popleft() for _ in range(min(room, len(self._waiting)))]

    def _run(self) -> None:
        while (joining := self._admit()) is not None:
            if joining:
                self._join(joining)
            for entry in list(self._active):
                reason = entry.stop_reason()
                if reason is not None:
                    self._leave(entry, reason)
            if self._active:
                self._step()
        with self._changed:
            waiting = list(self._waiting)
            self._waiting.clear()
        for entry in [*self._active, *waiting]:
            self._leave(entry, InternalError(f"the {self._name} batcher was closed"))

    def _join(self, joining: list[_Entry[SongT]]) -> None:
        try:
            self._model.join([entry.song for entry in joining])
        except Exception as exc:
            log.exception("%s: songs could not join the batch", self._name)
            for entry in joining:
                self._model.leave(entry.song)
                self._finish(entry, _as_service_error(exc))
            return
        self._active.extend(joining)
        self.stats.joined += len(joining)

    def _leave(self, entry: _Entry[SongT], error: BaseException | None) -> None:
        """Take a song out of the batch (if it is in it) and tell its caller it is over."""
        if entry in self._active:
            self._active.remove(entry)
            self._model.leave(entry.song)
        self._finish(entry, error)

    def _step(self) -> None:
        batch = list(self._active)
        self.stats.steps += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        self.stats.batch_sizes[len(batch)] += 1
        BATCH_SIZE.labels(self._name).observe(len(batch))
        started = time.perf_counter()
        try:
            produced = self._model.step([entry.song for entry in batch])
        except Exception as exc:
            log.exception("%s: a batched step failed", self._name)
            for entry in batch:
                self._leave(entry, _as_service_error(exc))
            return
        BATCH_STEP.labels(self._name).observe(time.perf_counter() - started)
        for entry, events in zip(batch, produced, strict=True):
            for event in events:
                entry.inbox.put(event)
            if any(isinstance(event, GeneratedBlock) and event.final for event in events):
                self._leave(entry, None)


def _as_service_error(exc: Exception) -> ServiceError:
    """Typed errors pass through; anything else is an internal error naming its type."""
    if isinstance(exc, ServiceError):
        return exc
    return InternalError(f"generation failed: {type(exc).__name__}: {exc}")
