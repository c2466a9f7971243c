"""Deadlines and cancellation as a plain object that engines poll, with no gRPC in sight.

A servicer builds a `CancellationToken` from its call context; the in-process pipeline builds one
directly. Long work calls `token.check()` at each step so it stops soon after the caller goes away.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from services.runtime.errors import CancelledError, DeadlineExceededError


class CancellationToken:
    """Says whether the work it guards should stop: cancelled, or past its deadline."""

    def __init__(self, deadline: float | None = None) -> None:
        """`deadline` is an absolute `time.monotonic()` value, or None for no deadline."""
        self._cancelled = threading.Event()
        self._reason = "cancelled by the caller"
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self.deadline = deadline

    @classmethod
    def with_timeout(cls, seconds: float | None) -> CancellationToken:
        """A token whose deadline is `seconds` from now (None: no deadline)."""
        return cls(None if seconds is None else time.monotonic() + seconds)

    def cancel(self, reason: str = "cancelled by the caller") -> None:
        """Ask the guarded work to stop at its next check, and run the cancellation callbacks once."""
        with self._lock:
            if self._cancelled.is_set():
                return
            self._reason = reason
            self._cancelled.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Run `callback` when the token is cancelled (at once if it already is), e.g. to cancel an RPC."""
        with self._lock:
            if not self._cancelled.is_set():
                self._callbacks.append(callback)
                return
        callback()

    @property
    def cancelled(self) -> bool:
        """True once `cancel` was called."""
        return self._cancelled.is_set()

    def time_remaining(self) -> float | None:
        """Seconds left before the deadline (may be negative), or None without a deadline."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def check(self) -> None:
        """Raise CancelledError or DeadlineExceededError when the work should stop."""
        if self._cancelled.is_set():
            raise CancelledError(self._reason)
        remaining = self.time_remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlineExceededError("deadline exceeded")

    def wait(self, seconds: float) -> None:
        """Sleep up to `seconds`, waking early (and raising) on cancellation or the deadline."""
        remaining = self.time_remaining()
        if remaining is not None:
            seconds = min(seconds, max(remaining, 0.0))
        self._cancelled.wait(seconds)
        self.check()

    def child(self) -> CancellationToken:
        """A token with the same deadline that is cancelled whenever this one is checked cancelled."""
        return _ChildToken(self)


class _ChildToken(CancellationToken):
    """A token that also stops when its parent stops; cancelling it leaves the parent alone."""

    def __init__(self, parent: CancellationToken) -> None:
        super().__init__(parent.deadline)
        self._parent = parent
        parent.on_cancel(lambda: self.cancel(parent._reason))

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set() or self._parent.cancelled

    def check(self) -> None:
        self._parent.check()
        super().check()
