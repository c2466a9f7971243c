"""Block flow matching: parity with the reference run, the end rule, resume, cancellation, the cache."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from services.diffusion.diffrhythm2.checkpoint import load_dit
from services.diffusion.diffrhythm2.engine import DiffusionEngine
from services.diffusion.diffrhythm2.kv_cache import BlockKVCache
from services.diffusion.diffrhythm2.sampler import BlockSampler, end_of_song
from services.runtime.cancellation import CancellationToken
from services.runtime.errors import CancelledError, DeadlineExceededError
from tests.diffusion.conftest import FIXTURE_DIR

TOKENS = np.array([500, 511, 503, 511, *range(40, 70), 511, 501, 511], dtype=np.int64)


def _style(seed: int = 0) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(512).astype(np.float32)
    return vector / np.linalg.norm(vector)


def _song(engine: DiffusionEngine, **kwargs) -> list:
    request = {"seed": 7, "steps": 4, "cfg_strength": 2.0, "max_frames": 50, **kwargs}
    return list(engine.sample(TOKENS, _style(), **request))


def test_sampled_latents_match_reference(reference_blocks: list, case: dict) -> None:
    assert [b.index for b in reference_blocks] == [0, 1, 2]
    assert [b.final for b in reference_blocks] == [False, False, True]
    assert {b.max_blocks for b in reference_blocks} == {3}
    assert [b.seconds_generated for b in reference_blocks] == [2.0, 4.0, 6.0]
    latents = np.concatenate([b.latents for b in reference_blocks])
    assert latents.dtype == np.float32 and latents.shape == case["latents"].shape
    assert np.abs(latents - case["latents"]).max() <= 1e-3


def test_max_frames_cuts_the_last_block(reference_engine: DiffusionEngine, case: dict) -> None:
    request = {"seed": case["seed"], "steps": case["steps"], "cfg_strength": case["cfg_strength"]}
    tokens, style = np.array(case["tokens"]), case["style_vector"]
    blocks = list(reference_engine.sample(tokens, style, max_frames=25, **request))
    assert [b.latents.shape[0] for b in blocks] == [10, 10, 5]
    assert blocks[-1].final and blocks[-1].max_blocks == 3
    assert np.abs(np.concatenate([b.latents for b in blocks]) - case["latents"][:25]).max() <= 1e-3


def test_same_seed_same_song_other_seed_other_song(demo_engine: DiffusionEngine) -> None:
    first = np.concatenate([b.latents for b in _song(demo_engine, max_frames=20)])
    again = np.concatenate([b.latents for b in _song(demo_engine, max_frames=20)])
    other = np.concatenate([b.latents for b in _song(demo_engine, max_frames=20, seed=8)])
    assert np.array_equal(first, again)
    assert np.abs(first - other).max() > 0.1


def test_guidance_strength_zero_runs_the_conditional_pass_only(demo_engine: DiffusionEngine) -> None:
    unguided = np.concatenate([b.latents for b in _song(demo_engine, max_frames=20, cfg_strength=0.0)])
    guided = np.concatenate([b.latents for b in _song(demo_engine, max_frames=20)])
    assert np.isfinite(unguided).all()
    assert np.abs(unguided - guided).max() > 1e-3


def test_end_rule_ignores_a_song_that_goes_on() -> None:
    latents = np.zeros((20, 64), np.float32)
    latents[5:8] = 1.0  # end frames in the middle do not end the song
    assert end_of_song(latents) is None
    assert end_of_song(np.zeros((0, 64), np.float32)) is None


def test_end_rule_cuts_before_the_last_ordinary_frame() -> None:
    latents = np.zeros((20, 64), np.float32)
    latents[16:] = 1.0 + np.random.default_rng(0).uniform(-0.2, 0.2, (4, 64))  # close: MSE <= 0.05
    assert end_of_song(latents) == 15  # frames 0..14 are kept; frame 15 is dropped as upstream does


def test_end_rule_threshold_is_mse_of_005() -> None:
    latents = np.zeros((3, 64), np.float32)
    latents[2] = 1.0 + np.sqrt(0.05) * 0.99
    assert end_of_song(latents) == 1
    latents[2] = 1.0 + np.sqrt(0.05) * 1.01
    assert end_of_song(latents) is None


def test_end_rule_on_a_song_of_end_frames_keeps_nothing() -> None:
    assert end_of_song(np.ones((10, 64), np.float32)) == 0


@pytest.mark.parametrize("resume_at", [1, 3])
def test_resume_from_prefix_gives_the_same_song(demo_engine: DiffusionEngine, resume_at: int) -> None:
    whole = _song(demo_engine)
    assert len(whole) == 5
    prefix = [b.latents for b in whole[:resume_at]]
    rest = _song(demo_engine, prefix=prefix)
    assert [b.index for b in rest] == list(range(resume_at, 5))
    for resumed, original in zip(rest, whole[resume_at:], strict=True):
        assert resumed.final == original.final and resumed.max_blocks == original.max_blocks
        assert np.array_equal(resumed.latents, original.latents)


def test_extending_a_song_continues_it(demo_engine: DiffusionEngine) -> None:
    short = _song(demo_engine, max_frames=20)
    longer = _song(demo_engine, max_frames=40)
    extension = _song(demo_engine, max_frames=40, prefix=[b.latents for b in short])
    assert [b.index for b in extension] == [2, 3]
    for extended, original in zip(extension, longer[2:], strict=True):
        np.testing.assert_allclose(extended.latents, original.latents, atol=1e-5)


class _CancelOnCheck(CancellationToken):
    """Cancels itself at its n-th check, so the test knows exactly where sampling stood."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.checks, self.at = 0, at

    def check(self) -> None:
        self.checks += 1
        if self.checks == self.at:
            self.cancel()
        super().check()


def test_cancellation_is_checked_at_every_ode_step(demo_engine: DiffusionEngine) -> None:
    token = _CancelOnCheck(at=6)  # the text check, then steps 1..4 of block 0, then step 1 of block 1
    produced = []
    with pytest.raises(CancelledError):
        for block in demo_engine.sample(TOKENS, _style(), seed=1, steps=5, max_frames=50, token=token):
            produced.append(block.index)
    assert produced == [0]
    assert token.checks == 6


def test_cancel_from_another_thread_stops_mid_block(reference_engine: DiffusionEngine) -> None:
    token = CancellationToken()
    blocks = reference_engine.sample(TOKENS, _style(), seed=1, steps=200, max_frames=3000, token=token)
    cancelled_at: list[float] = []

    def cancel() -> None:
        cancelled_at.append(time.monotonic())
        token.cancel()

    timer = threading.Timer(0.2, cancel)
    produced = []
    timer.start()
    with pytest.raises(CancelledError):
        for block in blocks:
            produced.append(block.index)
    stopped_after = time.monotonic() - cancelled_at[0]
    timer.join()
    assert len(produced) < 300  # the song was far from done
    assert stopped_after < 2.0  # one ODE step of the tiny model, with a wide margin for a busy machine


def test_deadline_stops_sampling(demo_engine: DiffusionEngine) -> None:
    token = CancellationToken.with_timeout(-1.0)
    with pytest.raises(DeadlineExceededError):
        next(demo_engine.sample(TOKENS, _style(), seed=1, max_frames=10, token=token))


def test_cache_views_share_its_buffer_and_grow_geometrically() -> None:
    cache = BlockKVCache(depth=1, rows=2, heads=2, head_dim=4, capacity=4, device="cpu", dtype=torch.float32)
    block = torch.randn(2, 2, 10, 4)
    for count in range(1, 41):
        keys, values = cache.extend(0, block, block * 2)
        assert keys.shape[2] == cache.length + 10
        assert keys.untyped_storage().data_ptr() == cache._keys[0].untyped_storage().data_ptr()
        torch.testing.assert_close(values[:, :, -10:], block * 2)
        cache.commit(10)
        assert cache.length == 10 * count
    assert cache.grow_count <= 8  # 4 -> 10 -> 20 -> 40 -> 80 -> 160 -> 320 -> 640 covers 400 positions
    assert cache.capacity >= 400
    torch.testing.assert_close(cache._keys[0][:, :, 390:400], block)


def test_a_block_ending_in_end_frames_is_cut_and_final(demo_engine: DiffusionEngine, monkeypatch) -> None:
    ending = np.zeros((10, 64), np.float32)
    ending[6:] = 1.0  # frames 16..19 of the song are end frames: frame 15 is dropped, 0..14 kept
    solved = iter([np.zeros((10, 64), np.float32), ending])
    monkeypatch.setattr(
        demo_engine._sampler, "_solve_block", lambda *args: torch.from_numpy(next(solved))[None]
    )
    blocks = _song(demo_engine, max_frames=100)
    assert [(b.index, b.latents.shape[0], b.final) for b in blocks] == [(0, 10, False), (1, 5, True)]
    assert blocks[1].max_blocks == 10 and blocks[1].seconds_generated == 3.0


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float16, 0.02), (torch.bfloat16, 0.1)])
def test_half_precision_path_runs_and_resumes(case: dict, dtype: torch.dtype, tolerance: float) -> None:
    # The CUDA configurations run the DiT in float16/bfloat16 with the ODE state in float32; the same
    # dtype plumbing runs here on CPU (the engine itself allows half precision only on CUDA).
    sampler = BlockSampler(load_dit(FIXTURE_DIR, dtype=dtype))
    request = {"seed": case["seed"], "steps": case["steps"], "cfg_strength": 2.0, "max_frames": 30}
    blocks = list(sampler.sample(np.array(case["tokens"]), case["style_vector"], **request))
    song = np.concatenate([b.latents for b in blocks])
    assert song.dtype == np.float32
    assert np.abs(song - case["latents"]).max() <= tolerance
    tokens, style = np.array(case["tokens"]), case["style_vector"]
    resumed = sampler.sample(tokens, style, prefix=[blocks[0].latents], **request)
    assert all(np.array_equal(a.latents, b.latents) for a, b in zip(resumed, blocks[1:], strict=True))
