"""Batching for the vocoder stage: windows of several songs that are ready at the same time are
decoded as one batch.

Each song's streaming decoder runs in its caller's thread (one gRPC thread per song) and asks for
one window at a time. All of them hand their windows to the engine's `WindowBatcher`, whose worker
thread decodes whatever is waiting when it becomes free: up to `max_batch` windows of the same
length, oldest first, in one call of the family's batch decode. Nothing waits on purpose for a batch
to fill, so a song alone is decoded as soon as its window is ready, exactly as without batching.
The family's batch decode must keep the windows independent, so a window's samples do not depend
on what else was in its batch.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from services.runtime.errors import InternalError
from services.runtime.metrics import BATCH_SIZE, BATCH_STEP

log = logging.getLogger(__name__)

BatchDecoder = Callable[[Sequence[np.ndarray]], Sequence[np.ndarray]]


@dataclass(eq=False)
class _Window:
    """One window waiting to be decoded, and where its result goes."""

    latents: np.ndarray
    done: threading.Event = field(default_factory=threading.Event)
    audio: np.ndarray | None = None
    error: BaseException | None = None


@dataclass
class WindowStats:
    """Counters a benchmark or a test reads: batch decodes run, windows per batch."""

    batches: int = 0
    largest_batch: int = 0
    batch_sizes: collections.Counter = field(default_factory=collections.Counter)


class WindowBatcher:
    """Decodes the windows of concurrent songs in batches, from one worker thread."""

    def __init__(self, decode_batch: BatchDecoder, max_batch: int, name: str = "vocoder") -> None:
        """`decode_batch` maps windows [frames, channels] (all the same length) to their audio."""
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self._decode_batch = decode_batch
        self.max_batch = max_batch
        self._name = name
        self._changed = threading.Condition()
        self._pending: collections.deque[_Window] = collections.deque()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.stats = WindowStats()

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Decode one window [frames, channels], batched with the windows of other songs waiting
        at the same time; returns its audio [channels, samples]. Blocks the calling thread."""
        window = _Window(latents)
        with self._changed:
            if self._closed:
                raise InternalError(f"the {self._name} window batcher is closed")
            self._pending.append(window)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"{self._name}-batcher", daemon=True)
                self._thread.start()
            self._changed.notify()
        window.done.wait()
        if window.error is not None:
            raise window.error
        return window.audio

    def close(self) -> None:
        """Stop the worker after its current batch; windows still waiting fail."""
        with self._changed:
            self._closed = True
            self._changed.notify()
        if self._thread is not None:
            self._thread.join()

    def _take(self) -> list[_Window]:
        """Wait for windows; take the oldest and up to max_batch - 1 more of the same length."""
        with self._changed:
            while not self._pending and not self._closed:
                self._changed.wait()
            if self._closed:
                for window in self._pending:
                    window.error = InternalError(f"the {self._name} window batcher was closed")
                    window.done.set()
                self._pending.clear()
                return []
            frames = self._pending[0].latents.shape[0]
            batch = [w for w in self._pending if w.latents.shape[0] == frames][: self.max_batch]
            for window in batch:
                self._pending.remove(window)
            return batch

    def _run(self) -> None:
        while batch := self._take():
            self.stats.batches += 1
            self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
            self.stats.batch_sizes[len(batch)] += 1
            BATCH_SIZE.labels(self._name).observe(len(batch))
            started = time.perf_counter()
            try:
                results = self._decode_batch([window.latents for window in batch])
            except Exception as exc:
                log.exception("%s: a batch of windows failed", self._name)
                for window in batch:
                    window.error = InternalError(f"decoding failed: {type(exc).__name__}: {exc}")
                    window.done.set()
                continue
            BATCH_STEP.labels(self._name).observe(time.perf_counter() - started)
            for window, audio in zip(batch, results, strict=True):
                window.audio = audio
                window.done.set()
