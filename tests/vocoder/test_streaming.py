"""Streaming decode equals the one-shot reference decode whatever the arrival pattern, with flat memory."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from services.runtime.cancellation import CancellationToken
from services.runtime.errors import CancelledError, InvalidArgumentError
from services.vocoder.diffrhythm2.engine import VocoderEngine
from services.vocoder.diffrhythm2.windows import WINDOWS
from services.vocoder.engine import PcmPiece, from_sample
from services.vocoder.streaming import StreamingDecoder

LENGTHS = [7, 19, 20, 21, 35, 44]
UNEVEN_GROUPS = [3, 0, 7, 1, 11, 2, 16]


def _latents(frames: int, seed: int, channels: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((frames, channels)).astype(np.float32)


def _groups(frames: int, pattern: str) -> list[int]:
    if pattern == "one_at_a_time":
        return [1] * frames
    if pattern == "all_at_once":
        return [frames]
    sizes, index = [], 0
    while sum(sizes) < frames:
        sizes.append(min(UNEVEN_GROUPS[index % len(UNEVEN_GROUPS)], frames - sum(sizes)))
        index += 1
    return sizes


def _stream(decoder: StreamingDecoder, latents: np.ndarray, groups: list[int]) -> list[PcmPiece]:
    pieces, begin = [], 0
    for size in groups:
        pieces += decoder.push(latents[begin : begin + size])
        begin += size
    return pieces + decoder.finish()


def _joined(pieces: list[PcmPiece]) -> np.ndarray:
    """The pieces' mono samples joined, after checking they are contiguous [1, n] float32 pieces."""
    offset = 0
    for piece in pieces:
        assert piece.offset == offset, "pieces must be contiguous and in order"
        assert piece.samples.dtype == np.float32 and piece.samples.shape[0] == 1
        offset += piece.samples.shape[1]
    return np.concatenate([p.samples for p in pieces], axis=1) if pieces else np.zeros((1, 0), np.float32)


@pytest.fixture(scope="module")
def one_shot(engine: VocoderEngine) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Latents and their one-shot decode for each tested length (decoded once per module)."""
    return {n: (x, engine.decode(x)) for n in LENGTHS for x in [_latents(n, seed=n)]}


@pytest.mark.parametrize("pattern", ["one_at_a_time", "uneven_groups", "all_at_once"])
@pytest.mark.parametrize("frames", LENGTHS)
def test_streaming_equals_one_shot_with_the_fixture_decoder(engine, one_shot, frames, pattern):
    latents, expected = one_shot[frames]
    audio = _joined(_stream(engine.stream(), latents, _groups(frames, pattern)))
    assert audio.shape == expected.shape == (1, frames * 9600)
    assert np.abs(audio - expected).max() <= 1e-6


def test_streaming_the_reference_latents_reproduces_the_reference_audio(
    engine, fixture_dir, reference_latents
):
    expected = np.load(fixture_dir / "expected_audio.npy")[None]
    audio = _joined(_stream(engine.stream(), reference_latents, [10, 10, 10]))
    assert np.abs(audio - expected).max() <= 1e-5


def test_samples_are_released_as_soon_as_they_are_final(engine):
    decoder = engine.stream()
    latents = _latents(50, seed=1)
    for received in range(1, 51):
        pieces = decoder.push(latents[received - 1 : received])
        assert decoder.emitted_samples == WINDOWS.final_frame_count(received) * 9600
        if received < 20:
            assert pieces == []
    assert decoder.emitted_samples == 33 * 9600
    assert sum(p.samples.shape[1] for p in decoder.finish()) == 17 * 9600


class _ToyGenerator(torch.nn.Module):
    """A fast stand-in decoder whose every output sample depends on its position and on the whole
    window, so a sample taken from the wrong window or at the wrong offset shows."""

    config = SimpleNamespace(in_channels=3, sampling_rate=20, samples_per_frame=4)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        frames = latents.shape[-1]
        position = torch.arange(frames * 4, dtype=torch.float32)
        per_frame = latents.sum(dim=1).repeat_interleave(4, dim=-1)
        return (per_frame + latents.mean() * position + frames)[:, None, :]


@settings(max_examples=150, deadline=None)
@given(
    frames=st.integers(min_value=0, max_value=130),
    cuts=st.lists(st.integers(min_value=0, max_value=130), max_size=12),
)
def test_any_arrival_pattern_gives_the_one_shot_result(frames, cuts):
    engine = VocoderEngine(_ToyGenerator(), torch.device("cpu"), max_frames=3000)
    latents = _latents(frames, seed=frames, channels=3)
    bounds = sorted({0, frames, *(c for c in cuts if c <= frames)})
    groups = [b - a for a, b in itertools.pairwise(bounds)] or [0]
    audio = _joined(_stream(engine.stream(), latents, groups))
    np.testing.assert_array_equal(audio, engine.decode(latents))


class _CountingGenerator(_ToyGenerator):
    """The toy decoder, counting the windows it decodes."""

    def __init__(self) -> None:
        super().__init__()
        self.windows = 0

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        self.windows += 1
        return super().forward(latents)


@settings(max_examples=100, deadline=None)
@given(
    frames=st.integers(min_value=1, max_value=130),
    start=st.integers(min_value=0, max_value=540),
    cuts=st.lists(st.integers(min_value=0, max_value=130), max_size=8),
)
def test_a_resumed_decode_gives_the_rest_of_the_song_and_skips_windows(frames, start, cuts):
    """A decode resumed at sample `start` (all frames sent again from the start) returns the whole
    song's samples from there on, bit for bit, and decodes no window that makes only earlier ones."""
    whole = VocoderEngine(_CountingGenerator(), torch.device("cpu"), max_frames=3000)
    latents = _latents(frames, seed=frames, channels=3)
    bounds = sorted({0, frames, *(c for c in cuts if c <= frames)})
    groups = [b - a for a, b in itertools.pairwise(bounds)] or [0]
    expected = _joined(_stream(whole.stream(), latents, groups))
    resumed = VocoderEngine(_CountingGenerator(), torch.device("cpu"), max_frames=3000)
    decoder = resumed.stream()
    decoder.skip_to(start)
    pieces = list(from_sample(_stream(decoder, latents, groups), start))
    first = min(start, frames * 4)
    assert [p.offset for p in pieces[:1]] in ([first], [])
    audio = np.concatenate([p.samples for p in pieces], axis=1) if pieces else np.zeros((1, 0), np.float32)
    np.testing.assert_array_equal(audio, expected[:, first:])
    assert resumed.generator.windows <= whole.generator.windows
    if start >= frames * 4 // 2 and frames >= 2 * WINDOWS.window_frames:
        assert resumed.generator.windows < whole.generator.windows


def test_memory_stays_flat_as_the_song_grows():
    engine = VocoderEngine(_ToyGenerator(), torch.device("cpu"), max_frames=3000)
    decoder = engine.stream()
    most_frames = most_windows = 0
    for frame in range(3000):
        decoder.push(_latents(1, seed=frame, channels=3))
        most_frames = max(most_frames, decoder.buffered_frames)
        most_windows = max(most_windows, decoder.buffered_windows)
    assert most_frames <= 35 and most_windows <= 2
    decoder.finish()
    assert decoder.emitted_samples == 3000 * 4


def test_empty_song_and_empty_blocks(engine):
    decoder = engine.stream()
    assert decoder.push(np.zeros((0, 64), np.float32)) == []
    assert decoder.finish() == []
    assert engine.decode(np.zeros((0, 64), np.float32)).shape == (1, 0)


def test_bad_blocks_are_invalid_arguments(engine):
    decoder = engine.stream()
    with pytest.raises(InvalidArgumentError, match=r"shape \[frames, 64\], got \[4, 63\]"):
        decoder.push(np.zeros((4, 63), np.float32))
    bad = np.zeros((4, 64), np.float32)
    bad[2, 5] = np.nan
    with pytest.raises(InvalidArgumentError, match="NaN or infinite"):
        decoder.push(bad)
    bad[2, 5] = np.inf
    with pytest.raises(InvalidArgumentError, match="NaN or infinite"):
        engine.decode(bad)


def test_frame_cap_is_enforced_when_streaming_and_one_shot(fixture_dir):
    engine = VocoderEngine.load(fixture_dir, max_frames=25)
    decoder = engine.stream()
    decoder.push(np.zeros((20, 64), np.float32))
    with pytest.raises(InvalidArgumentError, match="26 frames, more than the cap of 25") as info:
        decoder.push(np.zeros((6, 64), np.float32))
    assert info.value.violations[0].field == "frames"
    with pytest.raises(InvalidArgumentError, match="cap of 25"):
        engine.decode(np.zeros((26, 64), np.float32))


def test_cancellation_stops_before_the_next_window(engine):
    token = CancellationToken()
    decoder = engine.stream(token)
    token.cancel()
    with pytest.raises(CancelledError):
        decoder.push(np.zeros((20, 64), np.float32))
