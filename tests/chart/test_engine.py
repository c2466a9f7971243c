"""The engine: several charts in one batch, guidance, validation with the proto's field names."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from services.chart.engine import Chart, ChartProgress, SongAudio
from services.chart.mug.sampler import Conditioning, DdimSampler
from services.runtime.cancellation import CancellationToken
from services.runtime.errors import CancelledError, InvalidArgumentError
from tests.chart.conftest import reference_request

STEPS = 4


def _charts(engine, case, song: bytes, **changes) -> list[Chart]:
    request = reference_request(engine, case, song, steps=STEPS, **changes)
    return [event for event in engine.generate(request) if isinstance(event, Chart)]


def test_charts_in_one_batch_equal_the_charts_made_alone(engine, case, song_bytes) -> None:
    together = _charts(engine, case, song_bytes, seed=40, count=3)
    assert [chart.seed for chart in together] == [40, 41, 42]
    assert [chart.version for chart in together] == ["AI v1", "AI v2", "AI v3"]
    assert len({chart.latents.tobytes() for chart in together}) == 3
    for index, batched in enumerate(together):
        (alone,) = _charts(engine, case, song_bytes, seed=40 + index)
        assert np.abs(batched.latents - alone.latents).max() <= 1e-4
        assert batched.hit_objects == alone.hit_objects
        assert batched.bpm == alone.bpm and batched.offset_ms == alone.offset_ms


def test_unguided_charts_in_one_batch_equal_the_charts_made_alone(engine, case, song_bytes) -> None:
    together = _charts(engine, case, song_bytes, seed=7, count=2, guidance=1.0)
    for index, batched in enumerate(together):
        (alone,) = _charts(engine, case, song_bytes, seed=7 + index, guidance=1.0)
        assert np.abs(batched.latents - alone.latents).max() <= 1e-4
        assert batched.hit_objects == alone.hit_objects


def test_one_batched_unet_call_per_step(engine, case, song_bytes, monkeypatch) -> None:
    batches: list[int] = []
    forward = engine.model.unet_model.forward

    def counting(x, *args, **kwargs):
        batches.append(x.shape[0])
        return forward(x, *args, **kwargs)

    monkeypatch.setattr(engine.model.unet_model, "forward", counting)
    _charts(engine, case, song_bytes, count=3)
    assert batches == [6] * STEPS
    batches.clear()
    _charts(engine, case, song_bytes, count=2, guidance=1.0)
    assert batches == [2] * STEPS
    batches.clear()
    _charts(engine, case, song_bytes, count=1, guidance=1.0)
    assert batches == [2] * STEPS  # a lone row runs twice: the convolutions then match larger batches


def test_guidance_combines_the_two_halves(engine) -> None:
    class Halves:
        def __call__(self, x, timesteps, context, audio, plan):
            return torch.cat([torch.ones_like(x[:1]), torch.full_like(x[1:], 3.0)])

    sampler = DdimSampler(Halves(), engine.model.alphas_cumprod)
    context = torch.zeros(1, 21, 32)
    eps = sampler.eps(torch.zeros(1, 16, 32), 500, Conditioning(context, context, []), 2.5, None)
    assert torch.equal(eps, torch.full((1, 16, 32), 1.0 + 2.5 * (3.0 - 1.0)))


def test_progress_comes_before_the_charts(engine, case, song_bytes) -> None:
    events = list(engine.generate(reference_request(engine, case, song_bytes, steps=30, count=2)))
    progress = [e for e in events if isinstance(e, ChartProgress)]
    assert [(p.step, p.total_steps) for p in progress] == [(i, 31) for i in range(1, 32)]
    assert all(isinstance(e, Chart) for e in events[31:]) and len(events) == 33


def test_cancellation_stops_between_steps(engine, case, song_bytes) -> None:
    token = CancellationToken()
    events = engine.generate(reference_request(engine, case, song_bytes, steps=STEPS), token)
    assert isinstance(next(events), ChartProgress)
    token.cancel()
    with pytest.raises(CancelledError):
        next(events)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"steps": 0}, "options.steps"),
        ({"steps": 1001}, "options.steps"),
        ({"steps": 3}, "options.steps"),
        ({"steps": 333}, "options.steps"),
        ({"steps": 1000}, "options.steps"),
        ({"count": 0}, "options.count"),
        ({"count": 9}, "options.count"),
        ({"guidance": math.nan}, "options.guidance"),
        ({"guidance": -1.0}, "options.guidance"),
        ({"seed": 2**64 - 1, "count": 2}, "options.seed"),
        ({"jack_interval_ms": -5.0}, "options.mini_jack_interval"),
        ({"features": {"sr": 8.5}}, "options.features.sr"),
        ({"features": {"rank_status": "qualified"}}, "options.features.rank_status"),
        ({"features": {"bpm": 180.0}}, "options.features.bpm"),
        ({"audio": SongAudio()}, "encoded_audio"),
        ({"audio": SongAudio(encoded=b"")}, "encoded_audio"),
        ({"audio": SongAudio(encoded=b"\x00" * 64)}, "encoded_audio"),
        ({"audio": SongAudio(pcm=np.zeros(10, np.float32), sample_rate=0)}, "options.pcm_sample_rate"),
    ],
)
def test_invalid_requests_name_the_field(engine, case, song_bytes, changes: dict, field: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        engine.generate(reference_request(engine, case, song_bytes, **changes))
    assert [v.field for v in caught.value.violations] == [field]
