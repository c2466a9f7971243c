"""The job store contract, run against both backends: SQLite and a real PostgreSQL server."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import psycopg
import pytest

from gateway.job_store import (
    CANCEL_REQUESTED,
    JOB_CHANGED,
    JOB_QUEUED,
    JobRecord,
    JobStore,
    Lease,
    LeaseLostError,
    ModelIdentity,
    StoreUnavailableError,
    error_from_text,
    error_text,
    fingerprint,
)
from gateway.stages import Block
from gateway.stores import open_job_store
from gateway.stores.migrations import latest_version, migrations
from gateway.stores.postgresql import PostgresJobStore
from gateway.stores.sqlite import SqliteJobStore
from services.runtime.errors import FailedPreconditionError, FieldViolation, InvalidArgumentError
from songsmith.v1 import song_pb2
from tests.gateway.songs import request
from tests.postgres import PostgresServer

MODEL = ModelIdentity("diffrhythm2", "ab" * 32)
QUEUED, RUNNING = song_pb2.JOB_STATE_QUEUED, song_pb2.JOB_STATE_RUNNING
SUCCEEDED, CANCELLED = song_pb2.JOB_STATE_SUCCEEDED, song_pb2.JOB_STATE_CANCELLED


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store lives: a SQLite file, or a fresh database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "jobs.sqlite3")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(location: str) -> Iterator[JobStore]:
    """A store at `location`."""
    opened = open_job_store(location, retry_s=5)
    yield opened
    opened.close()


def job(job_id: str, created_at: float, owner: str = "alice") -> JobRecord:
    """A queued job record."""
    message = request(job_id)
    return JobRecord(
        job_id, fingerprint(message), message, 11, QUEUED, created_at, created_at, owner, created_at + 60
    )


def block(index: int, final: bool = False, seed: int = 0) -> Block:
    """A block of random latents made by MODEL."""
    latents = np.random.default_rng(seed + index).standard_normal((10, 64)).astype(np.float32)
    return Block(index, latents, final, 6, 10 * (index + 1), MODEL.revision)


def test_the_backend_follows_the_location(store: JobStore, location: str) -> None:
    expected = PostgresJobStore if location.startswith("postgresql://") else SqliteJobStore
    assert isinstance(store, expected)
    assert store.shared is (expected is PostgresJobStore)
    assert store.schema_version() == latest_version("sqlite") == latest_version("postgresql") == 5


def test_one_id_is_one_job_even_when_inserted_at_once(store: JobStore, location: str) -> None:
    first, inserted = store.insert_if_absent(job("song", 1.0))
    again, inserted_again = store.insert_if_absent(job("song", 2.0, owner="bob"))
    assert (inserted, inserted_again) == (True, False)
    assert again.owner == first.owner == "alice" and again.created_at == 1.0
    others = [open_job_store(location, retry_s=5) for _ in range(4)]
    outcomes: list[bool] = []
    threads = [
        threading.Thread(target=lambda s=s: outcomes.append(s.insert_if_absent(job("raced", 3.0))[1]))
        for s in others
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for other in others:
        other.close()
    assert sorted(outcomes) == [False, False, False, True]
    assert [record.job_id for record in store.list(10)] == ["raced", "song"]


def test_listing_filters_by_state_and_owner(store: JobStore) -> None:
    store.insert_if_absent(job("a", 1.0))
    store.insert_if_absent(job("b", 2.0, owner="bob"))
    store.insert_if_absent(job("c", 3.0))
    assert [r.job_id for r in store.list(10)] == ["c", "b", "a"]
    assert [r.job_id for r in store.list(10, owner="alice")] == ["c", "a"]
    assert [r.job_id for r in store.list(1, owner="alice")] == ["c"]
    assert store.claim("gw-1", 30).job_id == "a"
    assert [r.job_id for r in store.list(10, RUNNING)] == ["a"]
    assert [r.job_id for r in store.list(10, QUEUED, owner="bob")] == ["b"]
    assert store.count_queued() == 2


def test_claims_hand_out_each_job_once_oldest_first(store: JobStore, location: str) -> None:
    for number in range(12):
        store.insert_if_absent(job(f"job-{number:02d}", float(number)))
    first = store.claim("gw-1", 30)
    assert (first.job_id, first.state, first.attempt, first.lease_holder) == ("job-00", RUNNING, 1, "gw-1")
    claimers = [open_job_store(location, retry_s=5) for _ in range(3)]
    claimed: list[str] = []

    def claim_all(claimer: JobStore, holder: str) -> None:
        while (record := claimer.claim(holder, 30)) is not None:
            claimed.append(record.job_id)

    threads = [threading.Thread(target=claim_all, args=(c, f"gw-{n}")) for n, c in enumerate(claimers, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for claimer in claimers:
        claimer.close()
    assert sorted(claimed) == [f"job-{n:02d}" for n in range(1, 12)]
    assert store.claim("gw-1", 30) is None and store.count_queued() == 0


def test_the_submitters_trace_context_reaches_every_claim(store: JobStore) -> None:
    """Whichever gateway claims a job, and at every attempt, gets the trace context it was submitted
    with (the song continues that trace, or links to it when resumed)."""
    context = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "a=1"}
    submitted = job("traced", 1.0)
    submitted.trace_context = context
    store.insert_if_absent(submitted)
    store.insert_if_absent(job("untraced", 2.0))
    assert store.get("traced").trace_context == context
    first = store.claim("gw-1", 30)
    assert (first.job_id, first.attempt, first.trace_context) == ("traced", 1, context)
    store.release(Lease("traced", "gw-1", 1))
    again = store.claim("gw-2", 30)
    assert (again.job_id, again.attempt, again.trace_context) == ("traced", 2, context)
    assert store.claim("gw-1", 30).trace_context == {}


def test_an_expired_lease_passes_the_job_on_and_fences_the_old_runner(store: JobStore) -> None:
    store.insert_if_absent(job("song", 1.0))
    first = store.claim("gw-1", 0.3)
    old = Lease("song", "gw-1", first.attempt)
    store.add_block(old, block(0), MODEL)
    assert store.renew("gw-1", [old], 0.3) == {"song": ""}
    assert store.claim("gw-2", 30) is None, "a renewed lease is not up for grabs"
    time.sleep(0.5)
    second = store.claim("gw-2", 30)
    assert (second.attempt, second.lease_holder) == (2, "gw-2")
    assert store.renew("gw-1", [old], 30) == {}
    for write in (
        lambda: store.add_block(old, block(1), MODEL),
        lambda: store.append_event(old, 1, song_pb2.SongEvent()),
        lambda: store.update_progress(old, 2, 6, 4.0),
        lambda: store.finish(old, SUCCEEDED),
    ):
        with pytest.raises(LeaseLostError):
            write()
    kept = store.blocks("song")
    assert kept.model == MODEL and len(kept.blocks) == 1, "the new runner resumes after the old one's block"
    new = Lease("song", "gw-2", 2)
    store.update_progress(new, 1, 6, 2.0)
    assert store.get("song").blocks_done == 1


def test_kept_blocks_come_back_bit_for_bit_with_their_model(store: JobStore, location: str) -> None:
    store.insert_if_absent(job("song", 1.0))
    lease = Lease("song", "gw-1", store.claim("gw-1", 30).attempt)
    blocks = [block(i) for i in range(3)]
    for kept in blocks:
        store.add_block(lease, kept, MODEL)
    store.add_block(lease, block(4, final=True), MODEL)
    reopened = open_job_store(location, retry_s=5)
    kept = reopened.blocks("song")
    reopened.close()
    assert kept.model == MODEL
    assert [(b.index, b.final, b.max_blocks, b.frames_done, b.revision) for b in kept.blocks] == [
        (0, False, 6, 10, MODEL.revision),
        (1, False, 6, 20, MODEL.revision),
        (2, False, 6, 30, MODEL.revision),
    ]
    for restored, original in zip(kept.blocks, blocks, strict=True):
        assert restored.frames.dtype == np.float32 and np.array_equal(restored.frames, original.frames)
    store.add_block(lease, block(3), ModelIdentity("diffrhythm2", "cd" * 32))
    assert len(store.blocks("song").blocks) == 3, "a block of another revision is not part of the resume"
    assert store.blocks("another").blocks == [] and store.blocks("another").model is None


def test_kept_blocks_keep_their_candidate(store: JobStore) -> None:
    """Two songs sampled together stream as one numbering; each kept block says whose it is."""
    store.insert_if_absent(job("pair", 1.0))
    lease = Lease("pair", "gw-1", store.claim("gw-1", 30).attempt)
    latents = np.zeros((4, 64), np.float32)
    for index in range(3):
        store.add_block(
            lease, Block(index, latents, False, 4, 4 * (index + 1), MODEL.revision, index // 2), MODEL
        )
    assert [(b.index, b.candidate) for b in store.blocks("pair").blocks] == [(0, 0), (1, 0), (2, 1)]


def test_kept_codes_keep_their_integer_type(store: JobStore) -> None:
    store.insert_if_absent(job("codes", 1.0))
    lease = Lease("codes", "gw-1", store.claim("gw-1", 30).attempt)
    codes = np.random.default_rng(3).integers(0, 2048, (50, 4))
    store.add_block(lease, Block(0, codes, False, 3, 50, "ef" * 32), ModelIdentity("musicgen", "ef" * 32))
    (kept,) = store.blocks("codes").blocks
    assert kept.frames.dtype == np.int64 and np.array_equal(kept.frames, codes) and kept.frames_done == 50


def test_events_are_kept_per_attempt_and_a_new_attempt_starts_clean(store: JobStore) -> None:
    store.insert_if_absent(job("song", 1.0))
    lease = Lease("song", "gw-1", store.claim("gw-1", 0.2).attempt)
    events = [
        song_pb2.SongEvent(progress=song_pb2.Progress(stage="diffusion", blocks_done=n)) for n in (1, 2, 3)
    ]
    for seq, event in enumerate(events, 1):
        store.append_event(lease, seq, event)
    store.append_event(lease, 3, events[2])
    assert [(e.attempt, e.seq, e.event) for e in store.events("song", 0, 0)] == [
        (1, n, event) for n, event in enumerate(events, 1)
    ]
    assert [e.seq for e in store.events("song", 1, 2)] == [3]
    time.sleep(0.3)
    second = Lease("song", "gw-2", store.claim("gw-2", 30).attempt)
    assert store.events("song", 1, 3) == []
    store.append_event(second, 1, events[0])
    assert [(e.attempt, e.seq) for e in store.events("song", 1, 3)] == [(2, 1)]


def test_finishing_keeps_the_outcome_and_the_last_event(store: JobStore) -> None:
    store.insert_if_absent(job("song", 1.0))
    lease = Lease("song", "gw-1", store.claim("gw-1", 30).attempt)
    store.add_block(lease, block(0), MODEL)
    summary = song_pb2.SongSummary(size_bytes=1234, seed=11)
    summary.duration.FromSeconds(4)
    done = song_pb2.SongEvent(done=summary)
    store.finish(lease, SUCCEEDED, result=summary, last_event=done, last_seq=1)
    record = store.get("song")
    assert (record.state, record.result, record.lease_holder) == (SUCCEEDED, summary, "")
    assert record.finished and record.finished_at > 0
    assert [e.event for e in store.events("song", 0, 0)] == [done]
    assert store.blocks("song").blocks == []
    assert store.claim("gw-2", 30) is None


def test_cancellation_of_queued_running_and_orphaned_jobs(store: JobStore) -> None:
    store.insert_if_absent(job("queued", 1.0))
    store.insert_if_absent(job("running", 2.0))
    assert store.claim("gw-1", 30).job_id == "queued"
    store.request_cancel("queued", "changed my mind")
    queued = store.get("queued")
    assert (queued.state, queued.error) == (RUNNING, ""), "a claimed job is flagged, not ended"
    store.insert_if_absent(job("waiting", 3.0))
    waiting = store.request_cancel("waiting", "not needed")
    assert (waiting.state, waiting.error) == (CANCELLED, "CANCELLED: not needed")
    running = Lease("queued", "gw-1", 1)
    assert store.renew("gw-1", [running], 30) == {"queued": "changed my mind"}
    orphan = store.claim("gw-1", 0.2)
    assert orphan.job_id == "running"
    store.request_cancel("running", "stop it")
    time.sleep(0.3)
    assert store.claim("gw-2", 30) is None, "an orphaned job whose cancellation was asked is not resumed"
    assert (store.get("running").state, store.get("running").error) == (CANCELLED, "CANCELLED: stop it")
    assert store.request_cancel("nope", "x") is None
    assert store.request_cancel("waiting", "again").error == "CANCELLED: not needed"


def test_release_and_requeue_put_jobs_back_in_the_queue(store: JobStore) -> None:
    store.insert_if_absent(job("a", 1.0))
    store.insert_if_absent(job("b", 2.0))
    first = store.claim("gw-1", 30)
    store.add_block(Lease("a", "gw-1", first.attempt), block(0), MODEL)
    store.release(Lease("a", "gw-1", first.attempt))
    assert store.get("a").state == QUEUED and len(store.blocks("a").blocks) == 1
    assert store.claim("gw-2", 30).attempt == 2
    store.claim("gw-2", 30)
    assert store.requeue_unfinished() == 2
    assert {r.state for r in store.list(10)} == {QUEUED}


def test_delete_and_retention_remove_finished_jobs_only(store: JobStore) -> None:
    for number in range(3):
        store.insert_if_absent(job(f"job-{number}", float(number)))
    for _ in range(2):
        record = store.claim("gw-1", 30)
        lease = Lease(record.job_id, "gw-1", record.attempt)
        store.append_event(lease, 1, song_pb2.SongEvent())
        store.finish(lease, SUCCEEDED)
    assert not store.delete("job-2"), "an unfinished job is not deleted"
    assert store.delete("job-0") and store.get("job-0") is None and store.events("job-0", 0, 0) == []
    assert store.sweep(time.time() - 3600, time.time() - 3600) == []
    assert len(store.events("job-1", 0, 0)) == 1
    assert store.sweep(time.time() - 3600, time.time() + 1) == []
    assert store.events("job-1", 0, 0) == [], "old events of finished jobs go first"
    expired = store.sweep(time.time() + 1, time.time() + 1)
    assert [r.job_id for r in expired] == ["job-1"]
    assert [r.job_id for r in store.list(10)] == ["job-2"]


def test_every_gateway_hears_the_signals(store: JobStore, location: str) -> None:
    heard: list[tuple[str, str]] = []
    changed = threading.Event()

    def on_signal(kind: str, job_id: str) -> None:
        if kind != "resync":
            heard.append((kind, job_id))
            changed.set()

    listener = open_job_store(location, retry_s=5)
    listener.listen(on_signal)
    writer = listener if not store.shared else store
    time.sleep(0.5 if store.shared else 0)
    writer.insert_if_absent(job("song", 1.0))
    lease = Lease("song", "gw-1", writer.claim("gw-1", 30).attempt)
    writer.request_cancel("song", "stop")
    writer.append_event(lease, 1, song_pb2.SongEvent())
    deadline = time.monotonic() + 5
    while len(heard) < 3 and time.monotonic() < deadline:
        changed.wait(0.1)
    listener.close()
    assert heard == [(JOB_QUEUED, "song"), (CANCEL_REQUESTED, "song"), (JOB_CHANGED, "song")]


def test_a_first_release_sqlite_file_is_migrated_with_its_jobs(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    legacy = sqlite3.connect(path)
    legacy.executescript(migrations("sqlite")[0].sql)
    message = request("old")
    legacy.execute(
        "INSERT INTO jobs (job_id, fingerprint, request, seed, state, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        ("old", fingerprint(message), message.SerializeToString(), "11", SUCCEEDED, 5.0, 6.0),
    )
    legacy.commit()
    legacy.close()
    store = SqliteJobStore(path)
    record = store.get("old")
    assert (record.request, record.state, record.finished_at, record.owner) == (message, SUCCEEDED, 6.0, "")
    assert store.schema_version() == latest_version("sqlite")
    store.close()


def test_a_newer_schema_is_refused(tmp_path: Path, postgres_url: str) -> None:
    for location in (str(tmp_path / "jobs.sqlite3"), postgres_url):
        open_job_store(location).close()
        if location == postgres_url:
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute("INSERT INTO schema_migrations VALUES (99, 'future', 0)")
        else:
            with sqlite3.connect(location) as conn:
                conn.execute("INSERT INTO schema_migrations VALUES (99, 'future', 0)")
        known = f"schema version 99; this gateway knows up to {latest_version('sqlite')}"
        with pytest.raises(FailedPreconditionError, match=known):
            open_job_store(location)


def test_gateways_starting_together_migrate_once(postgres_url: str) -> None:
    stores: list[JobStore] = []
    threads = [
        threading.Thread(target=lambda: stores.append(open_job_store(postgres_url, retry_s=10)))
        for _ in range(5)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latest = latest_version("postgresql")
    assert len(stores) == 5 and {s.schema_version() for s in stores} == {latest}
    with psycopg.connect(postgres_url) as conn:
        applied = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
        assert applied == [(version,) for version in range(1, latest + 1)]
    for opened in stores:
        opened.close()


def test_calls_ride_out_a_database_restart_and_give_up_after_the_retry_budget() -> None:
    server = PostgresServer()
    server.start()
    try:
        store = open_job_store(server.url(), retry_s=20)
        store.insert_if_absent(job("song", 1.0))
        server.stop()
        restart = threading.Timer(1.0, server.start)
        restart.start()
        started = time.monotonic()
        assert store.get("song").job_id == "song"
        assert time.monotonic() - started >= 0.9
        restart.join()
        store.close()
        impatient = open_job_store(server.url(), retry_s=1.0)
        server.stop()
        with pytest.raises(StoreUnavailableError):
            impatient.get("song")
        impatient.close()
    finally:
        server.close()


def test_a_stored_invalid_argument_keeps_its_field_violations() -> None:
    violations = [
        FieldViolation("reference_audio", "not decodable as WAV (format: unknown; sorry)"),
        FieldViolation("charts.features[2]", "must be 0..1"),
    ]
    stored = error_text(grpc.StatusCode.INVALID_ARGUMENT, InvalidArgumentError(violations=violations).message)
    error = error_from_text(stored)
    assert isinstance(error, InvalidArgumentError) and error.violations == violations
    plain = error_from_text(error_text(grpc.StatusCode.INVALID_ARGUMENT, "no field here"))
    assert plain.violations == [FieldViolation("request", "no field here")]
    assert error_from_text("UNAVAILABLE: the stage is down").code == grpc.StatusCode.UNAVAILABLE


def test_a_closed_store_answers_reads_unavailable(location: str) -> None:
    """Reads on a closed store fail as the store's own UNAVAILABLE (the jobs gauge and health
    handle it), never as a driver error about a closed connection."""
    closed = open_job_store(location, retry_s=5)
    closed.insert_if_absent(job("kept", 1.0))
    closed.close()
    for read in (
        lambda: closed.get("kept"),
        closed.count_queued,
        lambda: closed.events("kept", 0, 0),
        lambda: closed.blocks("kept"),
    ):
        with pytest.raises(StoreUnavailableError, match="closed"):
            read()
