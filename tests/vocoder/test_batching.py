"""Window batching: windows of several songs decoded as one batch equal their solo decode, and
concurrent streams are batched without waiting for each other."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from services.runtime.errors import InternalError
from services.vocoder.batching import WindowBatcher
from services.vocoder.diffrhythm2.engine import VocoderEngine

EQUAL_TO_SOLO = 1e-6


def _latents(frames: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((frames, 64)).astype(np.float32)


def test_a_batch_of_windows_equals_each_window_decoded_alone(engine: VocoderEngine) -> None:
    windows = [_latents(20, seed) for seed in range(4)]
    batched = engine.decode_windows(windows)
    for window, audio in zip(windows, batched, strict=True):
        alone = engine.decode_windows([window])[0]
        assert audio.shape == alone.shape == (1, 20 * 9600)
        assert np.abs(audio - alone).max() <= EQUAL_TO_SOLO


def test_concurrent_streams_equal_their_one_shot_decodes(fixture_dir) -> None:
    engine = VocoderEngine.load(fixture_dir, max_window_batch=4)
    songs = {
        name: _latents(frames, seed) for name, frames, seed in [("a", 37, 1), ("b", 50, 2), ("c", 12, 3)]
    }
    expected = {name: engine.decode(latents) for name, latents in songs.items()}
    start = threading.Barrier(len(songs))
    results: dict[str, np.ndarray] = {}

    def stream(name: str) -> None:
        decoder = engine.stream()
        start.wait()
        pieces = []
        for begin in range(0, len(songs[name]), 10):
            pieces += decoder.push(songs[name][begin : begin + 10])
        pieces += decoder.finish()
        results[name] = np.concatenate([piece.samples for piece in pieces], axis=-1)

    threads = [threading.Thread(target=stream, args=(name,)) for name in songs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    engine.close()
    for name, audio in results.items():
        assert audio.shape == expected[name].shape
        assert np.abs(audio - expected[name]).max() <= EQUAL_TO_SOLO
    assert sorted(results) == sorted(songs)


def test_windows_waiting_together_are_one_batch_and_nobody_waits_for_a_batch_to_fill() -> None:
    started, release = threading.Event(), threading.Event()
    calls: list[list[int]] = []

    def decode_batch(windows):
        calls.append([int(w[0, 0]) for w in windows])
        started.set()
        release.wait(10)
        return [w * 2 for w in windows]

    batcher = WindowBatcher(decode_batch, max_batch=3, name="test")
    results: dict[int, np.ndarray] = {}

    def decode(value: int, frames: int = 20) -> None:
        results[value] = batcher.decode(np.full((frames, 2), float(value), np.float32))

    first = threading.Thread(target=decode, args=(0,))
    first.start()
    assert started.wait(10)  # window 0 is decoded alone, at once
    others = [threading.Thread(target=decode, args=(value,)) for value in range(1, 5)]
    others.append(threading.Thread(target=decode, args=(5, 7)))  # a short song's only window
    for thread in others:
        thread.start()
    deadline = time.monotonic() + 10
    while len(batcher._pending) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for thread in [first, *others]:
        thread.join(10)
    batcher.close()
    # 0 alone; then windows 1..4 in two batches (three at most) and the short window on its own
    assert calls[0] == [0] and len(calls) == 4 and [5] in calls
    assert sorted(len(call) for call in calls[1:]) == [1, 1, 3]
    assert sorted(value for call in calls for value in call) == [0, 1, 2, 3, 4, 5]
    assert all(np.array_equal(results[v], np.full_like(results[v], 2.0 * v)) for v in range(6))
    assert batcher.stats.largest_batch == 3


def test_a_failed_batch_fails_its_windows_and_the_batcher_goes_on() -> None:
    failures = iter([True, False])

    def decode_batch(windows):
        if next(failures):
            raise RuntimeError("out of memory")
        return list(windows)

    batcher = WindowBatcher(decode_batch, max_batch=2, name="test")
    with pytest.raises(InternalError, match="out of memory"):
        batcher.decode(np.zeros((20, 2), np.float32))
    assert batcher.decode(np.ones((20, 2), np.float32)).sum() == 40
    batcher.close()
