"""The gateway's metrics about songs rather than calls: time to first audio and real-time factor per
model, jobs queued (in the queue every gateway on the store shares) and running (on this gateway),
jobs this gateway ran to an outcome.

Every series whose labels are known when the job manager starts (its models, the job states) exists
from then on at zero. README.md's metrics table lists them with the stage metrics.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterable, Iterator

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from songsmith.v1 import song_pb2

TIME_TO_FIRST_AUDIO = Histogram(
    "songsmith_time_to_first_audio_seconds",
    "From a song's submission (its queueing included) to its first audio bytes.",
    ["model"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120, 300),
)
REAL_TIME_FACTOR = Histogram(
    "songsmith_real_time_factor",
    "Seconds of audio per second of work, per finished song (above 1: faster than real time).",
    ["model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 50),
)
JOBS_FINISHED = Counter(
    "songsmith_jobs_finished_total", "Jobs this gateway ran to an outcome, by final state.", ["state"]
)
JOBS = "songsmith_jobs"
LIVE_STATES = ("queued", "running")
FINAL_STATES = {
    song_pb2.JOB_STATE_SUCCEEDED: "succeeded",
    song_pb2.JOB_STATE_FAILED: "failed",
    song_pb2.JOB_STATE_CANCELLED: "cancelled",
}


def state_name(state: int) -> str:
    """`JOB_STATE_SUCCEEDED` -> "succeeded"."""
    return song_pb2.JobState.Name(state).removeprefix("JOB_STATE_").lower()


class _LiveJobs:
    """`songsmith_jobs{state}`, counted at scrape time from every job manager of the process: the
    jobs queued (left out while the store cannot be reached) and running."""

    def __init__(self) -> None:
        self._counters: weakref.WeakSet = weakref.WeakSet()

    def track(self, counter: object) -> None:
        """Count the jobs of `counter`, an object with `live_states() -> dict[str, int]`."""
        self._counters.add(counter)

    def forget(self, counter: object) -> None:
        """Stop counting the jobs of `counter`."""
        self._counters.discard(counter)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            JOBS, "Jobs waiting in the shared queue, and jobs this gateway runs now.", labels=["state"]
        )
        totals: dict[str, int] = {}
        for counter in list(self._counters):
            for state, count in counter.live_states().items():
                totals[state] = totals.get(state, 0) + count
        for state in LIVE_STATES:
            if state in totals:
                family.add_metric([state], totals[state])
        yield family


_LIVE_JOBS = _LiveJobs()
REGISTRY.register(_LIVE_JOBS)


def prepare_gateway(models: Iterable[str], jobs: object) -> None:
    """Create the per-model and per-state series at zero, and count `jobs`' live jobs."""
    for model in models:
        TIME_TO_FIRST_AUDIO.labels(model)
        REAL_TIME_FACTOR.labels(model)
    for name in FINAL_STATES.values():
        JOBS_FINISHED.labels(name)
    _LIVE_JOBS.track(jobs)


def forget_gateway(jobs: object) -> None:
    """Stop counting `jobs`' live jobs (its store is about to close)."""
    _LIVE_JOBS.forget(jobs)


def job_finished(state: int) -> None:
    """Count a job that ended in `state` (SUCCEEDED, FAILED or CANCELLED)."""
    JOBS_FINISHED.labels(FINAL_STATES[state]).inc()


class SongMeter:
    """Times one run of a song: its first audio, from the job's submission, and its speed."""

    def __init__(self, model: str, submitted_at: float, first_run: bool = True) -> None:
        """A song of `model` submitted at `submitted_at` (`time.time()`); a resumed run
        (`first_run` False) observes no time to first audio, since its listeners heard the song
        begin in an earlier run."""
        self._model = model
        self._submitted_at = submitted_at
        self._heard = not first_run

    def saw(self, event: song_pb2.SongEvent) -> None:
        """Note an event of the song: the first audio event observes the time to first audio."""
        if event.HasField("audio") and not self._heard:
            self._heard = True
            TIME_TO_FIRST_AUDIO.labels(self._model).observe(max(0.0, time.time() - self._submitted_at))

    def finished(self, summary: song_pb2.SongSummary) -> None:
        """Observe the finished song's real-time factor: its seconds of audio per second of work."""
        work = summary.stage_durations["total"].ToNanoseconds() / 1e9
        if work > 0:
            REAL_TIME_FACTOR.labels(self._model).observe(summary.duration.ToNanoseconds() / 1e9 / work)
