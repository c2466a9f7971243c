"""Jobs in process: idempotent ids, replay, cancellation, a full queue and resumption after restart."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from gateway.job_store import JobRecord, JobStore, fingerprint
from gateway.jobs import JobManager, JobSettings
from gateway.pipeline import Pipeline
from gateway.stages import Block
from services.runtime.cancellation import CancellationToken
from services.runtime.errors import AlreadyExistsError, CancelledError, NotFoundError, ResourceExhaustedError
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
    restarted = make_manager()
    restarted.store.insert_if_absent(
        JobRecord(
            "interrupted", fingerprint(interrupted), interrupted, 11, song_pb2.JOB_STATE_RUNNING, now, now
        )
    )
    assert restarted.resume_unfinished() == 1
    resumed, _ = _finish(restarted, "interrupted")
    assert resumed == expected
    assert restarted.get("interrupted").state == song_pb2.JOB_STATE_SUCCEEDED


def test_kept_blocks_survive_a_reopened_store_bit_for_bit(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    blocks = [
        Block(i, rng.standard_normal((10, 64)).astype(np.float32), False, 6, 10 * (i + 1), "rev-a")
        for i in range(3)
    ]
    codes = Block(0, rng.integers(0, 2048, (50, 4)), False, 3, 50, "rev-b")
    store = JobStore(tmp_path / "jobs.sqlite3")
    for block in blocks:
        store.add_block("song", block)
    store.add_block("song", Block(4, blocks[0].frames, True, 6, 45, "rev-a"))
    store.add_block("codes", codes)
    reopened = JobStore(tmp_path / "jobs.sqlite3")
    kept = reopened.blocks("song")
    assert [(b.index, b.final, b.max_blocks, b.frames_done, b.revision) for b in kept] == [
        (0, False, 6, 10, "rev-a"),
        (1, False, 6, 20, "rev-a"),
        (2, False, 6, 30, "rev-a"),
    ]
    assert all(
        np.array_equal(k.frames, b.frames) and k.frames.dtype == np.float32
        for k, b in zip(kept, blocks, strict=True)
    )
    (kept_codes,) = reopened.blocks("codes")
    assert kept_codes.frames.dtype == np.int64 and np.array_equal(kept_codes.frames, codes.frames)
    assert reopened.blocks("another") == []
    reopened.drop_blocks("song")
    assert store.blocks("song") == []


def test_a_restart_resumes_after_the_blocks_already_made(local_pipeline: Pipeline, tmp_path: Path) -> None:
    reference = JobManager(JobStore(tmp_path / "reference.sqlite3"), local_pipeline, tmp_path / "reference")
    reference.submit(request("uninterrupted", seconds=60))
    expected, _ = _finish(reference, "uninterrupted")
    reference.shutdown()

    first = JobManager(JobStore(tmp_path / "jobs.sqlite3"), local_pipeline, tmp_path / "results")
    first.submit(request("interrupted", seconds=60))
    for event in first.watch("interrupted", CancellationToken.with_timeout(120)):
        if event.HasField("progress") and event.progress.blocks_done >= 3:
            break
    first.shutdown()
    with pytest.raises(CancelledError):
        _finish(first, "interrupted")
    kept = len(first.store.blocks("interrupted"))
    assert 3 <= kept < 30
    assert first.get("interrupted").state == song_pb2.JOB_STATE_RUNNING

    spies: list[FlakyGeneration] = []
    spying = with_generation(
        local_pipeline.router, lambda inner: spies.append(FlakyGeneration(inner, 0, 0)) or spies[0]
    )
    spy = spies[0]
    second = JobManager(JobStore(tmp_path / "jobs.sqlite3"), spying, tmp_path / "results")
    assert second.resume_unfinished() == 1
    resumed, _ = _finish(second, "interrupted")
    second.shutdown()
    assert resumed == expected
    assert spy.prefixes == [kept]
    assert second.get("interrupted").state == song_pb2.JOB_STATE_SUCCEEDED
    assert second.store.blocks("interrupted") == []


def test_blocks_kept_from_another_model_revision_start_the_song_again(make_manager) -> None:
    reference = make_manager()
    reference.submit(request("uninterrupted"))
    expected, _ = _finish(reference, "uninterrupted")
    reference.shutdown()

    interrupted = request("interrupted")
    now = time.time()
    restarted = make_manager()
    restarted.store.insert_if_absent(
        JobRecord(
            "interrupted", fingerprint(interrupted), interrupted, 11, song_pb2.JOB_STATE_RUNNING, now, now
        )
    )
    stale = Block(0, np.zeros((10, 64), np.float32), False, 2, 10, "a-revision-no-stage-has")
    restarted.store.add_block("interrupted", stale)
    assert restarted.resume_unfinished() == 1
    resumed, events = _finish(restarted, "interrupted")
    assert resumed == expected
    notices = [event.notice for event in events if event.HasField("notice")]
    assert [notice.code for notice in notices] == ["resume_restarted"]
    assert "a-revision-n" in notices[0].message
    assert restarted.store.blocks("interrupted") == []
