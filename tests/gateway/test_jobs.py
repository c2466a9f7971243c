"""Jobs in process: idempotent ids, replay, cancellation, a full queue and resumption after restart."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from gateway.auth import Caller
from gateway.job_store import JobRecord, Lease, ModelIdentity, StoreUnavailableError, fingerprint
from gateway.jobs import JobManager, JobSettings
from gateway.pipeline import Pipeline
from gateway.results import FolderResults
from gateway.stages import Block
from gateway.stores.sqlite import SqliteJobStore
from services.runtime.cancellation import CancellationToken
from services.runtime.errors import (
    AlreadyExistsError,
    CancelledError,
    FailedPreconditionError,
    NotFoundError,
    ResourceExhaustedError,
)
from songsmith.v1 import song_pb2
from tests.gateway.songs import FlakyGeneration, assemble, request, with_generation


def _finish(manager, job_id: str) -> tuple[bytes, list[song_pb2.SongEvent]]:
    return assemble(manager.watch(job_id, CancellationToken.with_timeout(300)))


def _wait_for_progress(manager, job_id: str) -> None:
    for event in manager.watch(job_id, CancellationToken.with_timeout(120)):
        if event.HasField("progress") and event.progress.stage == "diffusion":
            return
    raise AssertionError("no diffusion progress")


def test_the_same_job_id_is_one_job(make_manager) -> None:
    manager = make_manager()
    first, created = manager.submit(request("song-a"))
    again, created_again = manager.submit(request("song-a"))
    assert (created, created_again) == (True, False)
    assert again.job_id == first.job_id == "song-a"
    with pytest.raises(AlreadyExistsError):
        manager.submit(request("song-a", seed=12))
    audio, events = _finish(manager, "song-a")
    assert events[0].accepted.job_id == "song-a" and events[-1].HasField("done")
    assert len(audio) == events[-1].done.size_bytes
    job = manager.get("song-a")
    assert job.state == song_pb2.JOB_STATE_SUCCEEDED and job.blocks_done == job.max_blocks == 2
    jobs, next_page = manager.list(10, song_pb2.JOB_STATE_SUCCEEDED)
    assert [j.job_id for j in jobs] == ["song-a"] and next_page == ""
    assert job.model == "diffrhythm2" and events[0].accepted.model == "diffrhythm2"
    replayed, replay_events = _finish(manager, "song-a")
    assert replayed == audio
    assert replay_events[-1].done == events[-1].done
    resubmitted, created_late = manager.submit(request("song-a"))
    assert not created_late and resubmitted.state == song_pb2.JOB_STATE_SUCCEEDED


def test_cancel_stops_a_running_job(make_manager) -> None:
    manager = make_manager()
    manager.submit(request("long", seconds=120))
    _wait_for_progress(manager, "long")
    started = time.monotonic()
    job = manager.cancel("long")
    assert time.monotonic() - started < 10
    assert job.state == song_pb2.JOB_STATE_CANCELLED and job.blocks_done < job.max_blocks
    with pytest.raises(CancelledError):
        _finish(manager, "long")


def test_a_full_queue_turns_jobs_away(make_manager) -> None:
    manager = make_manager(JobSettings(max_running=1, max_queued=1))
    manager.submit(request("running", seconds=120))
    _wait_for_progress(manager, "running")
    manager.submit(request("waiting"))
    with pytest.raises(ResourceExhaustedError):
        manager.submit(request("turned-away"))
    assert manager.cancel("waiting").state == song_pb2.JOB_STATE_CANCELLED
    manager.cancel("running")


def test_unknown_job(make_manager) -> None:
    with pytest.raises(NotFoundError):
        make_manager().get("nope")


def test_a_job_left_running_is_resumed_after_a_restart(make_manager) -> None:
    reference = make_manager()
    reference.submit(request("uninterrupted"))
    expected, _ = _finish(reference, "uninterrupted")
    reference.shutdown()

    interrupted = request("interrupted")
    now = time.time()
    restarted = make_manager(start=False)
    restarted.store.insert_if_absent(
        JobRecord(
            "interrupted", fingerprint(interrupted), interrupted, 11, song_pb2.JOB_STATE_RUNNING, now, now
        )
    )
    assert restarted.start() == 1
    resumed, _ = _finish(restarted, "interrupted")
    assert resumed == expected
    assert restarted.get("interrupted").state == song_pb2.JOB_STATE_SUCCEEDED


def test_a_restart_resumes_after_the_blocks_already_made(local_pipeline: Pipeline, tmp_path: Path) -> None:
    def manager(pipeline: Pipeline, name: str) -> JobManager:
        built = JobManager(
            SqliteJobStore(tmp_path / f"{name}.sqlite3"), pipeline, FolderResults(tmp_path / name)
        )
        built.start()
        return built

    reference = manager(local_pipeline, "reference")
    reference.submit(request("uninterrupted", seconds=60))
    expected, _ = _finish(reference, "uninterrupted")
    reference.close()

    first = manager(local_pipeline, "jobs")
    first.submit(request("interrupted", seconds=60))
    for event in first.watch("interrupted", CancellationToken.with_timeout(120)):
        if event.HasField("progress") and event.progress.blocks_done >= 3:
            break
    first.shutdown()
    with pytest.raises(CancelledError):
        _finish(first, "interrupted")
    kept = len(first.store.blocks("interrupted").blocks)
    assert 3 <= kept < 30
    assert first.get("interrupted").state == song_pb2.JOB_STATE_QUEUED
    first.store.close()

    spies: list[FlakyGeneration] = []
    spying = with_generation(
        local_pipeline.router, lambda inner: spies.append(FlakyGeneration(inner, 0, 0)) or spies[0]
    )
    spy = spies[0]
    second = manager(spying, "jobs")
    resumed, _ = _finish(second, "interrupted")
    second.close()
    assert resumed == expected
    assert spy.prefixes == [kept]
    after = SqliteJobStore(tmp_path / "jobs.sqlite3")
    assert after.get("interrupted").state == song_pb2.JOB_STATE_SUCCEEDED
    assert after.blocks("interrupted").blocks == []


def test_each_identity_sees_its_own_jobs_and_an_admin_sees_all(make_manager) -> None:
    manager = make_manager()
    alice, bob, admin = Caller("alice"), Caller("bob"), Caller("ops", admin=True)
    manager.submit(request("alices"), alice)
    _finish_as(manager, "alices", alice)
    for call in (
        lambda: manager.get("alices", bob),
        lambda: list(manager.watch("alices", CancellationToken.with_timeout(10), bob)),
        lambda: manager.cancel("alices", bob),
        lambda: manager.delete("alices", bob),
    ):
        with pytest.raises(NotFoundError, match="no job alices"):
            call()
    with pytest.raises(AlreadyExistsError):
        manager.submit(request("alices"), bob)
    assert manager.list(10, song_pb2.JOB_STATE_UNSPECIFIED, bob) == ([], "")
    listed, _ = manager.list(10, song_pb2.JOB_STATE_UNSPECIFIED, admin)
    assert [job.job_id for job in listed] == ["alices"]
    assert manager.get("alices", admin).state == song_pb2.JOB_STATE_SUCCEEDED


def _finish_as(manager: JobManager, job_id: str, caller: Caller) -> bytes:
    return assemble(manager.watch(job_id, CancellationToken.with_timeout(300), caller))[0]


def test_delete_removes_a_finished_job_and_its_song(make_manager, tmp_path: Path) -> None:
    manager = make_manager()
    manager.submit(request("long", seconds=120))
    _wait_for_progress(manager, "long")
    with pytest.raises(FailedPreconditionError, match="cancel it before deleting it"):
        manager.delete("long")
    manager.cancel("long")
    manager.delete("long")
    manager.submit(request("kept"))
    _finish(manager, "kept")
    song = tmp_path / "results" / "kept.wav"
    assert song.exists()
    manager.delete("kept")
    assert not song.exists()
    with pytest.raises(NotFoundError):
        manager.get("kept")
    with pytest.raises(NotFoundError):
        manager.delete("kept")


def test_finished_jobs_and_their_songs_expire(make_manager, tmp_path: Path) -> None:
    manager = make_manager(JobSettings(retention_s=1.0, poll_s=0.1))
    manager.submit(request("fleeting"))
    _finish(manager, "fleeting")
    song = tmp_path / "results" / "fleeting.wav"
    assert song.exists() and manager.get("fleeting").state == song_pb2.JOB_STATE_SUCCEEDED
    deadline = time.monotonic() + 10
    while song.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not song.exists()
    with pytest.raises(NotFoundError):
        manager.get("fleeting")


def test_blocks_kept_from_another_model_revision_start_the_song_again(make_manager) -> None:
    reference = make_manager()
    reference.submit(request("uninterrupted"))
    expected, _ = _finish(reference, "uninterrupted")
    reference.shutdown()

    interrupted = request("interrupted")
    interrupted.model = "diffrhythm2"
    now = time.time()
    restarted = make_manager(start=False)
    store = restarted.store
    store.insert_if_absent(
        JobRecord(
            "interrupted", fingerprint(interrupted), interrupted, 11, song_pb2.JOB_STATE_QUEUED, now, now
        )
    )
    claimed = store.claim("a-gateway-that-died", 30)
    stale = Block(0, np.zeros((10, 64), np.float32), False, 2, 10, "a-revision-no-stage-has")
    lease = Lease("interrupted", "a-gateway-that-died", claimed.attempt)
    store.add_block(lease, stale, ModelIdentity("diffrhythm2", stale.revision))
    store.release(lease)
    restarted.start()
    resumed, events = _finish(restarted, "interrupted")
    assert resumed == expected
    notices = [event.notice for event in events if event.HasField("notice")]
    assert [notice.code for notice in notices] == ["resume_restarted"]
    assert "a-revision-n" in notices[0].message


class _StoreThatRefusesOutcomes:
    """A real store whose `finish` fails (the database busy) the first `failures` times."""

    def __init__(self, inner: SqliteJobStore, failures: int) -> None:
        self._inner = inner
        self.failures = failures

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def finish(self, *args, **kwargs) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailableError("the jobs database is busy")
        self._inner.finish(*args, **kwargs)


def test_an_outcome_the_store_refuses_is_written_again_until_it_lands(
    local_pipeline: Pipeline, tmp_path: Path
) -> None:
    """The finished song's record is written again until the store takes it: the job succeeds on
    its first run (it was once left RUNNING, to be made again after its lease expired)."""
    store = _StoreThatRefusesOutcomes(SqliteJobStore(tmp_path / "jobs.sqlite3"), failures=3)
    manager = JobManager(store, local_pipeline, FolderResults(tmp_path / "results"), JobSettings(lease_s=60))
    manager.start()
    try:
        manager.submit(request("stubborn"))
        started = time.monotonic()
        audio, events = _finish(manager, "stubborn")
        assert events[-1].HasField("done") and audio
        assert time.monotonic() - started < 30
        record = store.get("stubborn")
        assert (record.state, record.attempt, store.failures) == (song_pb2.JOB_STATE_SUCCEEDED, 1, 0)
    finally:
        manager.close()


def test_health_follows_whether_the_store_takes_writes(make_manager, tmp_path: Path) -> None:
    """A write lock held on the jobs file by another process makes the gateway report its store
    unusable within seconds, and usable again once the lock is gone."""
    manager = make_manager()
    reports: list[bool] = []
    manager.watch_health(reports.append)
    locker = sqlite3.connect(tmp_path / "jobs.sqlite3", isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    deadline = time.monotonic() + 10
    while reports != [False]:
        assert time.monotonic() < deadline, reports
        time.sleep(0.05)
    with pytest.raises(NotFoundError):
        manager.get("nope")  # reads go on meanwhile
    locker.execute("ROLLBACK")
    locker.close()
    while reports != [False, True]:
        assert time.monotonic() < deadline + 10, reports
        time.sleep(0.05)


def test_a_closed_gateway_leaves_the_jobs_gauge(local_pipeline: Pipeline, tmp_path: Path) -> None:
    """Scraping the process's metrics after a job manager closed its store neither fails nor counts
    the closed manager (a scrape once hit its closed SQLite connection)."""
    manager = JobManager(
        SqliteJobStore(tmp_path / "jobs.sqlite3"), local_pipeline, FolderResults(tmp_path / "results")
    )
    manager.submit(request("left-queued"))
    assert (REGISTRY.get_sample_value("songsmith_jobs", {"state": "queued"}) or 0) >= 1
    manager.close()
    assert REGISTRY.get_sample_value("songsmith_jobs", {"state": "queued"}) in (None, 0)
