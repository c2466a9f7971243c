"""The pipeline in process: resuming a lost diffusion stream, loudness, failures in conditioning."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pyloudnorm
import pytest
import soundfile

from gateway.pipeline import Pipeline, RetryPolicy
from gateway.stages import LatentBlock, LatentRequest
from gateway.validation import song_spec
from services.runtime.cancellation import CancellationToken
from services.runtime.errors import CancelledError, InvalidArgumentError, UnavailableError
from tests.gateway.songs import request


class FlakyDiffusion:
    """Real stages whose diffusion stream breaks (UNAVAILABLE) after some blocks, a set number of times."""

    def __init__(self, stages, break_after: int, times: int) -> None:
        self._stages = stages
        self._break_after = break_after
        self._left = times
        self.prefixes: list[int] = []
        self.model_name, self.sample_rate = stages.model_name, stages.sample_rate

    def __getattr__(self, name: str):
        return getattr(self._stages, name)

    def generate_latents(
        self, latent_request: LatentRequest, token: CancellationToken
    ) -> Iterator[LatentBlock]:
        self.prefixes.append(len(latent_request.prefix))
        for sent, block in enumerate(self._stages.generate_latents(latent_request, token)):
            if self._left and sent == self._break_after:
                self._left -= 1
                raise UnavailableError("diffusion: connection reset")
            yield block


def _run(pipeline: Pipeline, **fields: object) -> tuple[bytes, list]:
    message = request("pipeline", **fields)
    events: list = []
    result = pipeline.run(song_spec(message, "pipeline", message.seed), CancellationToken(), events.append)
    return result.data, events


def test_a_lost_diffusion_stream_resumes_from_the_last_block(local_pipeline: Pipeline) -> None:
    expected, _ = _run(local_pipeline, max_seconds=8)
    flaky = FlakyDiffusion(local_pipeline.stages, break_after=1, times=2)
    retrying = Pipeline(flaky, RetryPolicy(attempts=3, first_backoff_s=0.01))
    resumed, events = _run(retrying, max_seconds=8)
    assert resumed == expected
    assert flaky.prefixes == [0, 1, 2]
    blocks = [
        e.progress.blocks_done for e in events if e.HasField("progress") and e.progress.stage == "diffusion"
    ]
    assert blocks == [1, 2, 3, 4]


def test_retries_give_up_after_the_attempts(local_pipeline: Pipeline) -> None:
    flaky = FlakyDiffusion(local_pipeline.stages, break_after=0, times=5)
    with pytest.raises(UnavailableError):
        _run(Pipeline(flaky, RetryPolicy(attempts=3, first_backoff_s=0.01)), max_seconds=4)
    assert flaky.prefixes == [0, 0, 0]


def test_loudness_normalized_songs_arrive_whole_at_the_end(local_pipeline: Pipeline) -> None:
    data, events = _run(local_pipeline, max_seconds=6, normalize_loudness=True, target_lufs=-20.0)
    kinds = [e.WhichOneof("event") for e in events]
    last_progress = max(i for i, kind in enumerate(kinds) if kind == "progress")
    assert kinds.index("audio") > last_progress
    audio, rate = soundfile.read(io.BytesIO(data))
    assert pyloudnorm.Meter(rate).integrated_loudness(audio) == pytest.approx(-20.0, abs=1.0)


def test_a_bad_reference_recording_fails_with_its_field(local_pipeline: Pipeline) -> None:
    message = request("bad-audio")
    message.style_audio = b"definitely not audio"
    with pytest.raises(InvalidArgumentError) as caught:
        local_pipeline.run(song_spec(message, "bad-audio", 1), CancellationToken(), lambda event: None)
    assert caught.value.violations[0].field == "data"


def test_a_cancelled_song_stops(local_pipeline: Pipeline) -> None:
    token = CancellationToken()
    seen: list = []

    def emit(event) -> None:
        seen.append(event)
        if event.HasField("progress") and event.progress.stage == "diffusion":
            token.cancel()

    with pytest.raises(CancelledError):
        local_pipeline.run(song_spec(request("cancelled", max_seconds=60), "cancelled", 1), token, emit)
    assert sum(1 for e in seen if e.HasField("progress") and e.progress.stage == "diffusion") <= 2
