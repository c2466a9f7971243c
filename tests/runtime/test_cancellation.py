"""Cancellation tokens: deadlines, cancel callbacks and child tokens."""

from __future__ import annotations

import time

import pytest

from services.runtime.cancellation import CancellationToken
from services.runtime.errors import CancelledError, DeadlineExceededError


def test_deadline_raises_after_it_passes() -> None:
    token = CancellationToken.with_timeout(0.05)
    token.check()
    with pytest.raises(DeadlineExceededError):
        token.wait(5)
    assert token.time_remaining() <= 0


def test_cancel_wakes_a_waiter_and_runs_callbacks_once() -> None:
    token = CancellationToken()
    calls: list[str] = []
    token.on_cancel(lambda: calls.append("first"))
    token.cancel("stop now")
    token.cancel("again")
    token.on_cancel(lambda: calls.append("late"))
    assert calls == ["first", "late"]
    with pytest.raises(CancelledError, match="stop now"):
        token.check()
    started = time.monotonic()
    with pytest.raises(CancelledError):
        token.wait(5)
    assert time.monotonic() - started < 2.0


def test_child_follows_its_parent_but_not_the_other_way() -> None:
    parent = CancellationToken()
    child = parent.child()
    child.cancel()
    parent.check()
    second = parent.child()
    seen: list[bool] = []
    second.on_cancel(lambda: seen.append(True))
    parent.cancel()
    assert seen == [True]
    with pytest.raises(CancelledError):
        second.check()
