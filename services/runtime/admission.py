"""Admission control: a bounded number of calls at work and a bounded queue in front of them.

A call beyond both bounds is turned away at once with RESOURCE_EXHAUSTED and a retry delay, so an
overloaded stage sheds load instead of growing memory and latency. A queued call gives up its place
when its caller cancels or its deadline passes.

Two budgets, each with its own bounds: work calls (a stage's model calls, the gateway's song
streams Generate and WatchJob, which last as long as a song) and short control calls (ModelInfo,
the gateway's job calls), so that open streams never starve the calls that manage them. Health
checks and reflection are never admitted or refused here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from services.runtime.calls import call_token
from services.runtime.cancellation import CancellationToken
from services.runtime.errors import ResourceExhaustedError
from services.runtime.handlers import ApplicationInterceptor, guarded
from services.runtime.metrics import QUEUE_DEPTH, QUEUE_WAIT

_POLL_S = 0.05


class AdmissionController:
    """Counts calls at work and waiting; admits, queues or rejects each new one."""

    def __init__(self, stage: str, max_concurrent: int, max_queue: int, retry_after_s: float) -> None:
        """At most `max_concurrent` calls run and `max_queue` wait; `retry_after_s` goes in RetryInfo."""
        if max_concurrent < 1 or max_queue < 0:
            raise ValueError("max_concurrent must be >= 1 and max_queue >= 0")
        self._stage = stage
        self._max_concurrent = max_concurrent
        self._max_queue = max_queue
        self._retry_after_s = retry_after_s
        self._running = 0
        self._waiting = 0
        self._changed = threading.Condition()

    @contextmanager
    def slot(self, token: CancellationToken) -> Iterator[None]:
        """Hold a place to work for the duration of the block, waiting in the queue if needed."""
        arrived = time.perf_counter()
        with self._changed:
            if self._running >= self._max_concurrent:
                if self._waiting >= self._max_queue:
                    raise ResourceExhaustedError(
                        f"{self._stage} is at capacity ({self._max_concurrent} running, "
                        f"{self._max_queue} queued); retry later",
                        retry_after_s=self._retry_after_s,
                    )
                self._waiting += 1
                QUEUE_DEPTH.labels(self._stage).set(self._waiting)
                try:
                    while self._running >= self._max_concurrent:
                        token.check()
                        self._changed.wait(_POLL_S)
                finally:
                    self._waiting -= 1
                    QUEUE_DEPTH.labels(self._stage).set(self._waiting)
            self._running += 1
        QUEUE_WAIT.labels(self._stage).observe(time.perf_counter() - arrived)
        try:
            yield
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify()


class AdmissionInterceptor(ApplicationInterceptor):
    """Runs every application call inside an admission slot of its budget."""

    def __init__(
        self, work: AdmissionController, control: AdmissionController, control_methods: frozenset[str]
    ) -> None:
        """Admit the calls of `control_methods` (full names, `/package.Service/Method`) through
        `control`, every other application call through `work`."""
        self._work = work
        self._control = control
        self._control_methods = control_methods

    def wrap(self, behavior: Callable[..., Any], streaming: bool, method: str) -> Callable[..., Any]:
        """Hold a slot of the method's budget for the whole call."""
        controller = self._control if method in self._control_methods else self._work
        return guarded(behavior, streaming, lambda context: controller.slot(call_token(context)))
