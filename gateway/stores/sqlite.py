"""The job store in one SQLite file: the embedded default for a single gateway.

One gateway owns the file (several gateways need PostgreSQL): leases still fence every runner
write, but after a restart `requeue_unfinished` hands every running job back to the queue at once,
and signals go straight to this process's listeners.

A write whose lock is held elsewhere (another process on the file, a backup) waits at most
`ATTEMPT_WAIT_S` per attempt and is tried again with bounded backoff, without holding the store's
own lock in between, for `busy_timeout_s` in all; then it fails with StoreUnavailableError. Reads
never wait for writers (WAL).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc

from gateway.job_store import (
    CANCEL_REQUESTED,
    JOB_CHANGED,
    JOB_QUEUED,
    JobRecord,
    KeptBlocks,
    Lease,
    LeaseLostError,
    ModelIdentity,
    Signal,
    StoredEvent,
    StoreUnavailableError,
    error_text,
)
from gateway.stages import Block
from gateway.stores.migrations import pending
from gateway.stores.rows import BLOCK_COLUMNS, JOB_COLUMNS, block_values, kept_blocks, record_from_row
from songsmith.v1 import song_pb2

QUEUED, RUNNING = song_pb2.JOB_STATE_QUEUED, song_pb2.JOB_STATE_RUNNING
CANCELLED = song_pb2.JOB_STATE_CANCELLED
_FINISHED_SQL = "(3, 4, 5)"
_SELECT_JOB = f"SELECT {JOB_COLUMNS} FROM jobs"
_HELD = "job_id = ? AND lease_holder = ? AND attempt = ? AND state = 2"
# One attempt at taking the write lock waits this long; then the store's lock is let go and the
# attempt repeated after a backoff growing from FIRST_BACKOFF_S to MAX_BACKOFF_S.
ATTEMPT_WAIT_S = 0.25
FIRST_BACKOFF_S = 0.05
MAX_BACKOFF_S = 1.0

log = logging.getLogger(__name__)


class SqliteJobStore:
    """Jobs in one SQLite file (WAL), one connection guarded by a lock."""

    shared = False

    def __init__(self, path: str | Path, busy_timeout_s: float = 30.0) -> None:
        """Open (creating if needed) the database at `path` and bring its schema up to date; a
        write waits up to `busy_timeout_s` for a lock held elsewhere."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._path = str(path)
        self._busy_timeout_s = busy_timeout_s
        self._db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(f"PRAGMA busy_timeout = {int(ATTEMPT_WAIT_S * 1000)}")
        self._lock = threading.RLock()
        self._closed = False
        self._prober: sqlite3.Connection | None = None
        self._listeners: list[Signal] = []
        try:
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The connection for a read, under the store's lock; UNAVAILABLE once the store is closed."""
        with self._lock:
            if self._closed:
                raise StoreUnavailableError("the jobs database is closed")
            yield self._db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; the write lock is waited for with bounded backoff (see the module)."""
        deadline = time.monotonic() + self._busy_timeout_s
        backoff = FIRST_BACKOFF_S
        while True:
            with self._lock:
                if self._closed:
                    raise StoreUnavailableError("the jobs database is closed")
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    failure = exc
                else:
                    try:
                        yield self._db
                        self._db.execute("COMMIT")
                    except sqlite3.OperationalError as exc:
                        self._db.execute("ROLLBACK")
                        raise StoreUnavailableError(f"the jobs database cannot be written: {exc}") from exc
                    except BaseException:
                        self._db.execute("ROLLBACK")
                        raise
                    return
            if time.monotonic() + backoff > deadline:
                raise StoreUnavailableError(f"the jobs database is busy: {failure}") from failure
            log.warning("the jobs database is busy (%s); trying again in %.2f s", failure, backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def usable(self, timeout_s: float) -> bool:
        """True when a write could start within `timeout_s` (taken and given back at once, on a
        connection of its own, without retries)."""
        try:
            if self._prober is None:
                self._prober = sqlite3.connect(
                    self._path, check_same_thread=False, isolation_level=None, timeout=timeout_s
                )
            self._prober.execute("BEGIN IMMEDIATE")
            self._prober.execute("ROLLBACK")
            return True
        except sqlite3.Error:
            return False

    def _migrate(self) -> None:
        with self._transaction() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            applied = {row[0] for row in db.execute("SELECT version FROM schema_migrations")}
            for migration in pending("sqlite", applied):
                for statement in migration.statements():
                    db.execute(statement)
                db.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, time.time()),
                )

    def schema_version(self) -> int:
        """The newest schema version applied to the file."""
        with self._reading() as db:
            return db.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]

    def _signal(self, kind: str, job_id: str) -> None:
        for listener in list(self._listeners):
            listener(kind, job_id)

    def _get(self, db: sqlite3.Connection, job_id: str) -> JobRecord | None:
        row = db.execute(f"{_SELECT_JOB} WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else record_from_row(row)

    @staticmethod
    def _check_held(db: sqlite3.Connection, lease: Lease) -> None:
        held = db.execute(f"SELECT 1 FROM jobs WHERE {_HELD}", (lease.job_id, lease.holder, lease.attempt))
        if held.fetchone() is None:
            raise LeaseLostError(f"job {lease.job_id}: attempt {lease.attempt} no longer holds the lease")

    def insert_if_absent(self, record: JobRecord) -> tuple[JobRecord, bool]:
        """Store `record` unless its job id exists; the stored record and whether it is new."""
        with self._transaction() as db:
            inserted = db.execute(
                "INSERT OR IGNORE INTO jobs (job_id, fingerprint, request, seed, state, created_at,"
                " updated_at, owner, deadline_at, trace_context) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.job_id,
                    record.fingerprint,
                    record.request.SerializeToString(),
                    str(record.seed),
                    record.state,
                    record.created_at,
                    record.updated_at,
                    record.owner,
                    record.deadline_at,
                    json.dumps(record.trace_context),
                ),
            ).rowcount
            stored = self._get(db, record.job_id)
        assert stored is not None
        if inserted:
            self._signal(JOB_QUEUED, record.job_id)
        return stored, bool(inserted)

    def get(self, job_id: str) -> JobRecord | None:
        """The job with this id, or None."""
        with self._reading() as db:
            return self._get(db, job_id)

    def list(
        self,
        limit: int,
        state: int = song_pb2.JOB_STATE_UNSPECIFIED,
        owner: str | None = None,
        offset: int = 0,
    ) -> list[JobRecord]:
        """Up to `limit` jobs after the first `offset`, newest first, optionally only in `state` and
        only of `owner`."""
        conditions, args = [], []
        if state != song_pb2.JOB_STATE_UNSPECIFIED:
            conditions, args = [*conditions, "state = ?"], [*args, state]
        if owner is not None:
            conditions, args = [*conditions, "owner = ?"], [*args, owner]
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        with self._reading() as db:
            rows = db.execute(
                f"{_SELECT_JOB}{where} ORDER BY created_at DESC, job_id LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
        return [record_from_row(row) for row in rows]

    def count_queued(self) -> int:
        """How many jobs wait to be claimed."""
        with self._reading() as db:
            return db.execute("SELECT count(*) FROM jobs WHERE state = 1").fetchone()[0]

    def claim(self, holder: str, lease_s: float) -> JobRecord | None:
        """The oldest waiting (or orphaned) job, now RUNNING under `holder`'s new lease."""
        cancelled: list[str] = []
        claimed = None
        with self._transaction() as db:
            while claimed is None:
                now = time.time()
                row = db.execute(
                    f"{_SELECT_JOB} WHERE state = 1 OR (state = 2 AND lease_expires < ?)"
                    " ORDER BY created_at, job_id LIMIT 1",
                    (now,),
                ).fetchone()
                if row is None:
                    break
                record = record_from_row(row)
                if record.cancel_reason:
                    self._end(
                        db,
                        record.job_id,
                        CANCELLED,
                        error_text(grpc.StatusCode.CANCELLED, record.cancel_reason),
                    )
                    cancelled.append(record.job_id)
                    continue
                db.execute(
                    "UPDATE jobs SET state = 2, lease_holder = ?, lease_expires = ?, attempt = attempt + 1,"
                    " updated_at = ? WHERE job_id = ?",
                    (holder, now + lease_s, now, record.job_id),
                )
                db.execute("DELETE FROM events WHERE job_id = ?", (record.job_id,))
                claimed = self._get(db, record.job_id)
        for job_id in cancelled:
            self._signal(JOB_CHANGED, job_id)
        return claimed

    @staticmethod
    def _end(
        db: sqlite3.Connection, job_id: str, state: int, error: str, result: bytes | None = None
    ) -> None:
        now = time.time()
        db.execute(
            "UPDATE jobs SET state = ?, error = ?, result = ?, finished_at = ?, updated_at = ?,"
            " lease_holder = '', lease_expires = 0 WHERE job_id = ?",
            (state, error, result, now, now, job_id),
        )
        db.execute("DELETE FROM blocks WHERE job_id = ?", (job_id,))

    def requeue_unfinished(self) -> int:
        """Every running job back to the queue (this gateway owns the file); how many are unfinished."""
        with self._transaction() as db:
            db.execute("UPDATE jobs SET state = 1, lease_holder = '', lease_expires = 0 WHERE state = 2")
            unfinished = db.execute("SELECT count(*) FROM jobs WHERE state = 1").fetchone()[0]
        if unfinished:
            self._signal(JOB_QUEUED, "")
        return unfinished

    def renew(self, holder: str, leases: list[Lease], lease_s: float) -> dict[str, str]:
        """Extend the leases still held; their jobs' cancellation reasons (empty: none requested)."""
        held: dict[str, str] = {}
        with self._transaction() as db:
            for lease in leases:
                if lease.holder != holder:
                    continue
                args = (lease.job_id, lease.holder, lease.attempt)
                if db.execute(
                    f"UPDATE jobs SET lease_expires = ? WHERE {_HELD}", (time.time() + lease_s, *args)
                ).rowcount:
                    held[lease.job_id] = db.execute(
                        "SELECT cancel_reason FROM jobs WHERE job_id = ?", (lease.job_id,)
                    ).fetchone()[0]
        return held

    def release(self, lease: Lease) -> None:
        """Back to the queue, kept blocks and all."""
        with self._transaction() as db:
            released = db.execute(
                f"UPDATE jobs SET state = 1, lease_holder = '', lease_expires = 0 WHERE {_HELD}",
                (lease.job_id, lease.holder, lease.attempt),
            ).rowcount
        if released:
            self._signal(JOB_QUEUED, lease.job_id)

    def update_progress(
        self, lease: Lease, blocks_done: int, max_blocks: int, seconds_generated: float
    ) -> None:
        """Record how far the song is."""
        with self._transaction() as db:
            updated = db.execute(
                f"UPDATE jobs SET blocks_done = ?, max_blocks = ?, seconds_generated = ?, updated_at = ?"
                f" WHERE {_HELD}",
                (
                    blocks_done,
                    max_blocks,
                    seconds_generated,
                    time.time(),
                    lease.job_id,
                    lease.holder,
                    lease.attempt,
                ),
            ).rowcount
        if not updated:
            raise LeaseLostError(f"job {lease.job_id}: attempt {lease.attempt} no longer holds the lease")

    def append_event(self, lease: Lease, seq: int, event: song_pb2.SongEvent) -> None:
        """Keep the `seq`-th event of the lease's attempt."""
        with self._transaction() as db:
            self._check_held(db, lease)
            self._insert_event(db, lease, seq, event)
        self._signal(JOB_CHANGED, lease.job_id)

    @staticmethod
    def _insert_event(db: sqlite3.Connection, lease: Lease, seq: int, event: song_pb2.SongEvent) -> None:
        db.execute(
            "INSERT OR IGNORE INTO events (job_id, attempt, seq, event) VALUES (?, ?, ?, ?)",
            (lease.job_id, lease.attempt, seq, event.SerializeToString()),
        )

    def events(self, job_id: str, attempt: int, after_seq: int) -> list[StoredEvent]:
        """The job's events after (`attempt`, `after_seq`), in order."""
        with self._reading() as db:
            rows = db.execute(
                "SELECT attempt, seq, event FROM events WHERE job_id = ?"
                " AND (attempt > ? OR (attempt = ? AND seq > ?)) ORDER BY attempt, seq",
                (job_id, attempt, attempt, after_seq),
            ).fetchall()
        return [StoredEvent(a, s, song_pb2.SongEvent.FromString(data)) for a, s, data in rows]

    def add_block(self, lease: Lease, block: Block, model: ModelIdentity) -> None:
        """Keep a finished block with the model that made it."""
        stored = block_values(block)
        with self._transaction() as db:
            self._check_held(db, lease)
            db.execute(
                f"INSERT OR REPLACE INTO blocks (job_id, {BLOCK_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    lease.job_id,
                    block.index,
                    *stored[:4],
                    model.name,
                    model.revision,
                    *stored[4:],
                ),
            )

    def blocks(self, job_id: str) -> KeptBlocks:
        """The job's kept blocks from block 0 on, with the model that made them."""
        with self._reading() as db:
            rows = db.execute(
                f"SELECT {BLOCK_COLUMNS} FROM blocks WHERE job_id = ? ORDER BY block_index", (job_id,)
            ).fetchall()
        return kept_blocks(rows)

    def finish(
        self,
        lease: Lease,
        state: int,
        error: str = "",
        result: song_pb2.SongSummary | None = None,
        last_event: song_pb2.SongEvent | None = None,
        last_seq: int = 0,
    ) -> None:
        """End the job in `state`, keeping `last_event` in the same transaction."""
        with self._transaction() as db:
            self._check_held(db, lease)
            if last_event is not None:
                self._insert_event(db, lease, last_seq, last_event)
            self._end(db, lease.job_id, state, error, None if result is None else result.SerializeToString())
        self._signal(JOB_CHANGED, lease.job_id)

    def request_cancel(self, job_id: str, reason: str) -> JobRecord | None:
        """Cancel a queued job at once, flag a running one; None for an unknown id."""
        signal = ""
        with self._transaction() as db:
            record = self._get(db, job_id)
            if record is None:
                return None
            if record.state == QUEUED:
                self._end(db, job_id, CANCELLED, error_text(grpc.StatusCode.CANCELLED, reason))
                signal = JOB_CHANGED
            elif record.state == RUNNING and not record.cancel_reason:
                db.execute("UPDATE jobs SET cancel_reason = ? WHERE job_id = ?", (reason, job_id))
                signal = CANCEL_REQUESTED
            record = self._get(db, job_id)
        if signal:
            self._signal(signal, job_id)
        return record

    def delete(self, job_id: str) -> bool:
        """Remove a finished job, its blocks and events."""
        with self._transaction() as db:
            deleted = db.execute(
                f"DELETE FROM jobs WHERE job_id = ? AND state IN {_FINISHED_SQL}", (job_id,)
            ).rowcount
            if deleted:
                db.execute("DELETE FROM events WHERE job_id = ?", (job_id,))
                db.execute("DELETE FROM blocks WHERE job_id = ?", (job_id,))
        return bool(deleted)

    def sweep(self, finished_before: float, events_finished_before: float) -> list[JobRecord]:
        """Remove jobs finished before `finished_before` (returned) and older finished jobs' events."""
        with self._transaction() as db:
            rows = db.execute(
                f"{_SELECT_JOB} WHERE state IN {_FINISHED_SQL} AND finished_at < ?", (finished_before,)
            ).fetchall()
            expired = [record_from_row(row) for row in rows]
            for record in expired:
                db.execute("DELETE FROM jobs WHERE job_id = ?", (record.job_id,))
                db.execute("DELETE FROM blocks WHERE job_id = ?", (record.job_id,))
            db.execute(
                "DELETE FROM events WHERE job_id IN (SELECT job_id FROM jobs"
                f" WHERE state IN {_FINISHED_SQL} AND finished_at < ?)"
                " OR job_id NOT IN (SELECT job_id FROM jobs)",
                (events_finished_before,),
            )
        return expired

    def listen(self, on_signal: Signal) -> None:
        """Call `on_signal` after each change this process makes (it is the file's only user)."""
        self._listeners.append(on_signal)

    def close(self) -> None:
        """Close the database (writes still waiting for the lock give up)."""
        with self._lock:
            self._closed = True
            self._db.close()
            if self._prober is not None:
                self._prober.close()
