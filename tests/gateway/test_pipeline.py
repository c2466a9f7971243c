"""The pipeline in process: resuming a lost diffusion stream, loudness, failures in conditioning."""

from __future__ import annotations

import io
from dataclasses import replace

import pyloudnorm
import pytest
import soundfile

from gateway.pipeline import RESUME_RESTARTED, Pipeline, RetryPolicy
from gateway.results import MemoryResults
from gateway.stages import Block
from gateway.validation import song_spec
from services.runtime.cancellation import CancellationToken
from services.runtime.errors import CancelledError, InvalidArgumentError, UnavailableError
from tests.gateway.songs import FlakyGeneration, request, with_generation


def _run(pipeline: Pipeline, **fields: object) -> tuple[bytes, list]:
    message = request("pipeline", **fields)
    events: list = []
    outputs = MemoryResults()
    pipeline.run(
        song_spec(message, "pipeline", message.seed), CancellationToken(), events.append, outputs=outputs
    )
    return outputs.files[0], events


def _flaky(
    pipeline: Pipeline, break_after: int, times: int, budget_s: float = 60.0
) -> tuple[Pipeline, FlakyGeneration]:
    made: list[FlakyGeneration] = []

    def wrap(inner):
        made.append(FlakyGeneration(inner, break_after, times))
        return made[0]

    retry = RetryPolicy(budget_s=budget_s, first_backoff_s=0.01)
    return with_generation(pipeline.router, wrap, retry), made[0]


def test_a_lost_diffusion_stream_resumes_from_the_last_block(local_pipeline: Pipeline) -> None:
    expected, _ = _run(local_pipeline, seconds=8)
    retrying, flaky = _flaky(local_pipeline, break_after=1, times=2)
    resumed, events = _run(retrying, seconds=8)
    assert resumed == expected
    assert flaky.prefixes == [0, 1, 2]
    blocks = [
        e.progress.blocks_done for e in events if e.HasField("progress") and e.progress.stage == "diffusion"
    ]
    assert blocks == [1, 2, 3, 4]


def _run_keeping(
    pipeline: Pipeline, kept: list[Block], seconds: float, events: list | None = None
) -> tuple[bytes, list[Block]]:
    message = request("pipeline", seconds=seconds)
    sampled: list[Block] = []
    spec = song_spec(message, "pipeline", message.seed)
    emit = events.append if events is not None else (lambda event: None)
    outputs = MemoryResults()
    pipeline.run(spec, CancellationToken(), emit, kept, sampled.append, outputs)
    return outputs.files[0], sampled


def test_kept_blocks_of_an_interrupted_run_are_not_sampled_again(local_pipeline: Pipeline) -> None:
    expected, every_block = _run_keeping(local_pipeline, [], seconds=8)
    assert [b.index for b in every_block] == [0, 1, 2, 3] and every_block[-1].final
    spying, spy = _flaky(local_pipeline, break_after=0, times=0)
    resumed, sampled = _run_keeping(spying, every_block[:2], seconds=8)
    assert resumed == expected
    assert spy.prefixes == [2]
    assert [b.index for b in sampled] == [2, 3]


def test_kept_blocks_of_another_revision_are_not_continued(local_pipeline: Pipeline) -> None:
    expected, every_block = _run_keeping(local_pipeline, [], seconds=8)
    stale = [replace(block, revision="0" * 64) for block in every_block[:2]]
    spying, spy = _flaky(local_pipeline, break_after=0, times=0)
    events: list = []
    restarted, sampled = _run_keeping(spying, stale, seconds=8, events=events)
    assert restarted == expected
    assert spy.prefixes == [0]
    assert [b.index for b in sampled] == [0, 1, 2, 3]
    notices = [e.notice for e in events if e.HasField("notice")]
    assert [n.code for n in notices] == [RESUME_RESTARTED] and "000000000000" in notices[0].message


def test_a_song_whose_last_block_was_kept_needs_no_diffusion(local_pipeline: Pipeline) -> None:
    expected, every_block = _run_keeping(local_pipeline, [], seconds=4)
    spying, spy = _flaky(local_pipeline, break_after=0, times=0)
    finished, sampled = _run_keeping(spying, every_block, seconds=4)
    assert finished == expected
    assert spy.prefixes == [] and sampled == []


def test_resuming_gives_up_when_the_budget_is_spent(local_pipeline: Pipeline) -> None:
    retrying, flaky = _flaky(local_pipeline, break_after=0, times=1000, budget_s=0.3)
    with pytest.raises(UnavailableError):
        _run(retrying, seconds=4)
    assert 3 <= len(flaky.prefixes) < 20 and set(flaky.prefixes) == {0}


def test_loudness_normalized_songs_arrive_whole_at_the_end(local_pipeline: Pipeline) -> None:
    data, events = _run(local_pipeline, seconds=6, normalize_loudness=True, target_lufs=-20.0)
    kinds = [e.WhichOneof("event") for e in events]
    last_progress = max(i for i, kind in enumerate(kinds) if kind == "progress")
    assert kinds.index("audio") > last_progress
    audio, rate = soundfile.read(io.BytesIO(data))
    assert pyloudnorm.Meter(rate).integrated_loudness(audio) == pytest.approx(-20.0, abs=1.0)


def test_a_bad_style_recording_fails_with_its_request_field(local_pipeline: Pipeline) -> None:
    message = request("bad-audio", style_prompt="")
    message.style_audio = b"definitely not audio"
    with pytest.raises(InvalidArgumentError) as caught:
        local_pipeline.run(song_spec(message, "bad-audio", 1), CancellationToken(), lambda event: None)
    [violation] = caught.value.violations
    assert violation.field == "style_audio"
    assert violation.description == "not decodable as WAV, FLAC, MP3 or OGG audio (Format not recognised)"


def test_a_cancelled_song_stops(local_pipeline: Pipeline) -> None:
    token = CancellationToken()
    seen: list = []

    def emit(event) -> None:
        seen.append(event)
        if event.HasField("progress") and event.progress.stage == "diffusion":
            token.cancel()

    with pytest.raises(CancelledError):
        local_pipeline.run(song_spec(request("cancelled", seconds=60), "cancelled", 1), token, emit)
    assert sum(1 for e in seen if e.HasField("progress") and e.progress.stage == "diffusion") <= 2
