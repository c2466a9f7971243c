"""Continuous batching: a song sampled in a batch equals the same song sampled alone, whoever else is
in the batch and whenever it joined; the batcher's queue, cancellation and failure handling."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from services.diffusion.batching import BatchLimits, ContinuousBatcher
from services.diffusion.diffrhythm2.batched import BatchedBlockSampler, SongInBatch
from services.diffusion.diffrhythm2.engine import DiffusionEngine
from services.diffusion.diffrhythm2.kv_cache import BatchKVCache
from services.diffusion.engine import GeneratedBlock, GenerationRequest
from services.runtime.cancellation import CancellationToken
from services.runtime.errors import (
    CancelledError,
    DeadlineExceededError,
    InternalError,
    InvalidArgumentError,
    ResourceExhaustedError,
)

EQUAL_TO_SOLO = 1e-4


def _style(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(512).astype(np.float32)
    return vector / np.linalg.norm(vector)


def _tokens(length: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 1001, length).astype(np.int64)


@dataclass(frozen=True)
class Song:
    """One test song: its request and the batched step at which it joins."""

    tokens: np.ndarray
    style: np.ndarray
    seed: int
    steps: int
    cfg_strength: float
    max_frames: int
    joins_at: int
    prefix: tuple[np.ndarray, ...] = field(default=())

    def in_batch(self) -> SongInBatch:
        return SongInBatch(
            self.tokens,
            self.style,
            self.seed,
            self.steps,
            self.cfg_strength,
            self.max_frames,
            list(self.prefix),
        )

    def solo(self, engine: DiffusionEngine) -> list:
        request = {"seed": self.seed, "steps": self.steps, "cfg_strength": self.cfg_strength}
        blocks = engine.sample(
            self.tokens, self.style, max_frames=self.max_frames, prefix=list(self.prefix), **request
        )
        return list(blocks)


def _drive(sampler: BatchedBlockSampler, songs: dict[str, Song], cancel: dict[str, int]) -> dict[str, list]:
    """Run the batch step by step as the batcher does: joins before a step, leaves after the final
    block (or at the step given in `cancel`); returns every song's blocks."""
    waiting = dict(songs)
    active: dict[str, SongInBatch] = {}
    produced: dict[str, list] = {name: [] for name in songs}
    step = 0
    while waiting or active:
        joining = {name: song.in_batch() for name, song in waiting.items() if song.joins_at <= step}
        sampler.join(list(joining.values()))
        active.update(joining)
        for name in joining:
            del waiting[name]
        for name in [n for n in active if cancel.get(n) == step]:
            sampler.leave(active.pop(name))
        names = list(active)
        if names:
            events = sampler.step([active[name] for name in names])
            for name, produced_now in zip(names, events, strict=True):
                produced[name] += produced_now
                if any(block.final for block in produced_now):
                    sampler.leave(active.pop(name))
        step += 1
    return produced


def _assert_equal_to_solo(batched: list[GeneratedBlock], solo: list) -> None:
    assert [b.index for b in batched] == [b.index for b in solo]
    assert [b.final for b in batched] == [b.final for b in solo]
    assert [b.max_blocks for b in batched] == [b.max_blocks for b in solo]
    for mine, alone in zip(batched, solo, strict=True):
        assert mine.frames.shape == alone.latents.shape
        assert np.abs(mine.frames - alone.latents).max() <= EQUAL_TO_SOLO


def test_songs_joining_at_different_blocks_equal_their_solo_runs(reference_engine: DiffusionEngine) -> None:
    resumed_from = Song(_tokens(30, 4), _style(4), 4, 4, 2.0, 40, 0).solo(reference_engine)
    songs = {
        # joins first, 5 blocks, the last one cut to 3 frames
        "first": Song(_tokens(30, 1), _style(1), 1, 4, 2.0, 43, joins_at=0),
        # longer lyrics and no guidance (one row), joins in the middle of first's block 1
        "unguided": Song(_tokens(52, 2), _style(2), 2, 6, 0.0, 30, joins_at=5),
        # different steps and guidance, joins when first is at block 2
        "late": Song(_tokens(17, 3), _style(3), 3, 3, 4.5, 20, joins_at=9),
        # resumed after its first block: re-encodes its prefix inside the batch
        "resumed": Song(
            _tokens(30, 4), _style(4), 4, 4, 2.0, 40, joins_at=2, prefix=(resumed_from[0].latents,)
        ),
        # cancelled mid-way: its rows are freed while the others go on
        "cancelled": Song(_tokens(30, 5), _style(5), 5, 4, 2.0, 60, joins_at=1),
    }
    sampler = BatchedBlockSampler(reference_engine.model)
    produced = _drive(sampler, songs, cancel={"cancelled": 7})
    for name in ("first", "unguided", "late", "resumed"):
        _assert_equal_to_solo(produced[name], songs[name].solo(reference_engine))
    assert len(produced["cancelled"]) == 1  # one block done before it was cancelled
    _assert_equal_to_solo(produced["cancelled"], songs["cancelled"].solo(reference_engine)[:1])
    assert sampler.cache.rows == 0


def test_a_song_alone_in_the_batch_is_bit_identical_to_the_solo_sampler(
    reference_engine: DiffusionEngine, case: dict, reference_blocks: list
) -> None:
    request = GenerationRequest(
        tokens=np.array(case["tokens"]),
        style=case["style_vector"],
        seed=case["seed"],
        steps=case["steps"],
        cfg_strength=case["cfg_strength"],
        max_frames=case["max_frames"],
    )
    blocks = list(reference_engine.generate(request))
    assert [b.frames_done for b in blocks] == [10, 20, 30]
    for mine, alone in zip(blocks, reference_blocks, strict=True):
        assert np.array_equal(mine.frames, alone.latents)


def _request(song: Song) -> GenerationRequest:
    return GenerationRequest(
        tokens=song.tokens,
        style=song.style,
        seed=song.seed,
        steps=song.steps,
        cfg_strength=song.cfg_strength,
        max_frames=song.max_frames,
    )


def _collect(engine: DiffusionEngine, song: Song, token: CancellationToken, out: dict, name: str) -> None:
    try:
        out[name] = list(engine.generate(_request(song), token))
    except Exception as error:
        out[name] = error


def test_concurrent_generate_calls_are_batched_and_equal_solo(reference_model_dir, reference_engine) -> None:
    engine = DiffusionEngine.load(reference_model_dir, limits=BatchLimits(max_batch=4, max_queue=4))
    songs = {
        f"song{i}": Song(_tokens(20 + 7 * i, 10 + i), _style(10 + i), 10 + i, 5, 2.0, 30 + 10 * i, 0)
        for i in range(3)
    }
    victim = Song(_tokens(25, 20), _style(20), 20, 200, 2.0, 3000, 0)
    tokens = {name: CancellationToken() for name in [*songs, "victim"]}
    results: dict = {}
    threads = [
        threading.Thread(target=_collect, args=(engine, song, tokens[name], results, name))
        for name, song in [*songs.items(), ("victim", victim)]
    ]
    for thread in threads:
        thread.start()
    for thread in threads[:-1]:
        thread.join(timeout=120)
    tokens["victim"].cancel()
    threads[-1].join(timeout=30)
    engine.close()
    assert isinstance(results["victim"], CancelledError)
    for name, song in songs.items():
        _assert_equal_to_solo(results[name], song.solo(reference_engine))
    assert engine.batcher.stats.largest_batch >= 2


def test_full_batch_and_queue_refuse_with_a_retry_delay(reference_model_dir) -> None:
    engine = DiffusionEngine.load(
        reference_model_dir, limits=BatchLimits(max_batch=1, max_queue=1, retry_after_s=3)
    )
    long_song = _request(Song(_tokens(10, 1), _style(1), 1, 200, 2.0, 3000, 0))
    token = CancellationToken()
    running, waiting = engine.generate(long_song, token), engine.generate(long_song, token)
    with pytest.raises(ResourceExhaustedError) as refused:
        engine.generate(long_song)
    assert refused.value.retry_after_s == 3
    token.cancel()
    for song in (running, waiting):
        with pytest.raises(CancelledError):
            list(song)
    blocks = list(engine.generate(_request(Song(_tokens(10, 1), _style(1), 1, 2, 2.0, 10, 0))))
    assert [b.final for b in blocks] == [True]  # both places were given back
    engine.close()


def test_bad_requests_fail_at_the_call(reference_engine: DiffusionEngine) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        reference_engine.generate(
            GenerationRequest(tokens=np.array([1, 2]), style=_style(0), max_frames=5000)
        )
    assert [v.field for v in caught.value.violations] == ["max_frames"]


def test_a_song_past_its_deadline_while_waiting_never_joins(reference_model_dir) -> None:
    engine = DiffusionEngine.load(reference_model_dir, limits=BatchLimits(max_batch=1, max_queue=2))
    token = CancellationToken()
    running = engine.generate(_request(Song(_tokens(10, 1), _style(1), 1, 200, 2.0, 3000, 0)), token)
    late = engine.generate(
        _request(Song(_tokens(10, 2), _style(2), 2, 4, 2.0, 10, 0)), CancellationToken.with_timeout(0.2)
    )
    with pytest.raises(DeadlineExceededError):
        list(late)
    token.cancel()
    with pytest.raises(CancelledError):
        list(running)
    assert engine.batcher.stats.joined == 1
    engine.close()


class CountingModel:
    """A stand-in family: a song is a number of steps; each step emits one block, the last final."""

    def __init__(self, fail_at_step: int | None = None) -> None:
        self.steps_run = 0
        self.batches: list[list[str]] = []
        self.left: list[str] = []
        self.fail_at_step = fail_at_step

    def join(self, songs):
        for song in songs:
            song["done"] = 0

    def step(self, songs):
        self.steps_run += 1
        self.batches.append([song["name"] for song in songs])
        if self.steps_run == self.fail_at_step:
            raise RuntimeError("the device fell over")
        events = []
        for song in songs:
            song["done"] += 1
            final = song["done"] == song["length"]
            events.append(
                [GeneratedBlock(song["done"] - 1, np.zeros((1, 1), np.float32), final, song["length"], 0)]
            )
        return events

    def leave(self, song):
        self.left.append(song["name"])


def test_the_batcher_lets_short_songs_leave_without_waiting_for_long_ones() -> None:
    model = CountingModel()
    batcher = ContinuousBatcher(model, BatchLimits(max_batch=3, max_queue=5), name="test")
    joining, hold = threading.Event(), threading.Event()
    model_join = model.join

    def gated_join(songs):
        joining.set()
        hold.wait(10)  # the first song joins alone; the others are queued meanwhile
        model_join(songs)

    model.join = gated_join
    lengths = {"a": 5, "b": 2, "c": 3, "d": 2}
    streams = {"a": batcher.submit({"name": "a", "length": 5})}
    assert joining.wait(10)
    streams.update({name: batcher.submit({"name": name, "length": lengths[name]}) for name in "bcd"})
    hold.set()
    blocks = {name: list(stream) for name, stream in streams.items()}
    batcher.close()
    assert {name: len(found) for name, found in blocks.items()} == lengths
    # b, c join at the next step; d waits (three at most) and takes b's place as soon as b ends
    assert model.batches == [["a"], ["a", "b", "c"], ["a", "b", "c"], ["a", "c", "d"], ["a", "d"]]
    assert model.left == ["b", "c", "a", "d"]
    assert batcher.stats.largest_batch == 3 and batcher.stats.steps == 5


def test_a_failed_step_fails_its_songs_and_the_batcher_goes_on() -> None:
    model = CountingModel(fail_at_step=2)
    batcher = ContinuousBatcher(model, BatchLimits(max_batch=4, max_queue=0), name="test")
    with pytest.raises(InternalError, match="the device fell over"):
        list(batcher.submit({"name": "unlucky", "length": 3}))
    assert len(list(batcher.submit({"name": "next", "length": 2}))) == 2
    batcher.close()


def test_batch_cache_moves_the_last_row_into_a_freed_one_and_masks_padding() -> None:
    cache = BatchKVCache(depth=1, heads=1, head_dim=2, device="cpu", dtype=torch.float32)
    assert list(cache.add_rows(2, 8)) == [0, 1]
    assert list(cache.add_rows(1, 8)) == [2]
    cache.begin_pass(0, 3, 3)
    keys = torch.arange(18, dtype=torch.float32).view(3, 1, 3, 2)
    cache.extend(0, keys, keys)
    cache.commit([0, 2], 3)
    mask = cache.begin_pass(0, 3, 1)
    assert mask[:, 0, 0].tolist() == [[True] * 4, [True, False, False, False], [True] * 4]
    found, _ = cache.extend(0, torch.full((3, 1, 1, 2), -1.0), torch.zeros(3, 1, 1, 2))
    assert found[1, 0, 0].tolist() == [-1.0, -1.0]  # row 1 writes right after its empty history
    assert found[2, 0, 3].tolist() == [-1.0, -1.0]
    assert cache.remove_row(0) == 2
    assert cache.rows == 2 and cache.lengths == [3, 0]
    torch.testing.assert_close(cache._keys[0][0, :, :3], keys[2])


def test_closing_the_batcher_ends_every_song_in_flight() -> None:
    batcher = ContinuousBatcher(CountingModel(), BatchLimits(max_batch=1, max_queue=1), name="test")
    running = batcher.submit({"name": "long", "length": 10**9})
    waiting = batcher.submit({"name": "next", "length": 1})
    next(running)  # the first song is being sampled, the second waits for its place
    batcher.close()
    for song in (running, waiting):
        with pytest.raises(InternalError, match="batcher was closed"):
            list(song)
    with pytest.raises(InternalError, match="batcher is closed"):
        batcher.submit({"name": "late", "length": 1})
