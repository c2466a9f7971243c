"""The job store in PostgreSQL: one song queue shared by several gateways.

psycopg 3 with a connection pool. Claims take the oldest waiting job with `SELECT ... FOR UPDATE
SKIP LOCKED`, so two gateways never claim one job; lease times use the database's clock. Every
change that another gateway may wait for is announced with NOTIFY on one channel, heard by a
LISTEN connection per gateway (the gateways also poll, so a lost notification only delays).
Connection failures (a database restart, a failover) are retried with backoff for `retry_s`
seconds before a call gives up with StoreUnavailableError.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import grpc
import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from gateway.job_store import (
    CANCEL_REQUESTED,
    JOB_CHANGED,
    JOB_QUEUED,
    RESYNC,
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

log = logging.getLogger(__name__)

T = TypeVar("T")
CHANNEL = "songsmith_jobs"
# The advisory lock held while migrations run (any constant every gateway agrees on).
MIGRATION_LOCK = 0x534F4E47
QUEUED, RUNNING = song_pb2.JOB_STATE_QUEUED, song_pb2.JOB_STATE_RUNNING
CANCELLED = song_pb2.JOB_STATE_CANCELLED
_NOW = "extract(epoch from clock_timestamp())"
_FINISHED_SQL = "(3, 4, 5)"
_SELECT_JOB = f"SELECT {JOB_COLUMNS} FROM jobs"
_HELD = "job_id = %s AND lease_holder = %s AND attempt = %s AND state = 2"
_RETRIED = (psycopg.OperationalError, PoolTimeout)


def _held_args(lease: Lease) -> tuple[str, str, int]:
    return (lease.job_id, lease.holder, lease.attempt)


def _notify(conn: psycopg.Connection, kind: str, job_id: str) -> None:
    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{kind}:{job_id}"))


class PostgresJobStore:
    """Jobs in a PostgreSQL database shared by every gateway of a deployment."""

    shared = True

    def __init__(self, url: str, retry_s: float = 30.0, pool_size: int = 8) -> None:
        """Connect to `url` (waiting up to `retry_s` for the database) and migrate its schema."""
        self._url = url
        self._retry_s = retry_s
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=False,
            check=ConnectionPool.check_connection,
            kwargs={"connect_timeout": 5},
            name="songsmith-jobs",
        )
        try:
            self._pool.open(wait=True, timeout=retry_s)
        except PoolTimeout as exc:
            self._pool.close()
            raise StoreUnavailableError(f"the jobs database did not answer within {retry_s:.0f} s") from exc
        self._listeners: list[Signal] = []
        self._listener: threading.Thread | None = None
        self._closing = threading.Event()
        try:
            self._migrate()
        except BaseException:
            self._pool.close()
            raise

    def _run(self, work: Callable[[psycopg.Connection], T]) -> T:
        """`work` in one transaction, retried on connection failures for up to `retry_s` seconds."""
        deadline = time.monotonic() + self._retry_s
        delay = 0.05
        while True:
            if self._closing.is_set():
                raise StoreUnavailableError("the jobs database is closed")
            try:
                with self._pool.connection(timeout=max(deadline - time.monotonic(), 0.1)) as conn:
                    return work(conn)
            except _RETRIED as exc:
                if time.monotonic() + delay > deadline:
                    raise StoreUnavailableError(f"the jobs database is unavailable: {exc}") from exc
                log.warning("jobs database call failed (%s); retrying in %.2f s", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def usable(self, timeout_s: float) -> bool:
        """True when the database answers a query within `timeout_s` (no retries)."""
        try:
            with self._pool.connection(timeout=timeout_s) as conn:
                conn.execute("SELECT 1")
            return True
        except _RETRIED:
            return False

    def _migrate(self) -> None:

        def migrate(conn: psycopg.Connection) -> None:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
            )
            applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for migration in pending("postgresql", applied):
                for statement in migration.statements():
                    conn.execute(statement)
                conn.execute(
                    f"INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, {_NOW})",
                    (migration.version, migration.name),
                )
                log.info(
                    "jobs database migrated to schema version %d (%s)", migration.version, migration.name
                )

        self._run(migrate)

    def schema_version(self) -> int:
        """The newest schema version applied to the database."""
        return self._run(
            lambda conn: conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
        )

    @staticmethod
    def _get(conn: psycopg.Connection, job_id: str, lock: bool = False) -> JobRecord | None:
        row = conn.execute(
            f"{_SELECT_JOB} WHERE job_id = %s{' FOR UPDATE' if lock else ''}", (job_id,)
        ).fetchone()
        return None if row is None else record_from_row(row)

    @staticmethod
    def _check_held(conn: psycopg.Connection, lease: Lease) -> None:
        if conn.execute(f"SELECT 1 FROM jobs WHERE {_HELD} FOR SHARE", _held_args(lease)).fetchone() is None:
            raise LeaseLostError(f"job {lease.job_id}: attempt {lease.attempt} no longer holds the lease")

    def insert_if_absent(self, record: JobRecord) -> tuple[JobRecord, bool]:
        """Store `record` unless its job id exists; the stored record and whether it is new."""

        def insert(conn: psycopg.Connection) -> tuple[JobRecord, bool]:
            inserted = conn.execute(
                "INSERT INTO jobs (job_id, fingerprint, request, seed, state, created_at, updated_at, owner,"
                " deadline_at, trace_context) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (job_id) DO NOTHING",
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
            if inserted:
                _notify(conn, JOB_QUEUED, record.job_id)
            stored = self._get(conn, record.job_id)
            assert stored is not None
            return stored, bool(inserted)

        return self._run(insert)

    def get(self, job_id: str) -> JobRecord | None:
        """The job with this id, or None."""
        return self._run(lambda conn: self._get(conn, job_id))

    def list(
        self,
        limit: int,
        state: int = song_pb2.JOB_STATE_UNSPECIFIED,
        owner: str | None = None,
        offset: int = 0,
    ) -> list[JobRecord]:
        """Up to `limit` jobs after the first `offset`, newest first, optionally only in `state` and
        only of `owner`."""
        conditions: list[str] = []
        args: list[object] = []
        if state != song_pb2.JOB_STATE_UNSPECIFIED:
            conditions, args = [*conditions, "state = %s"], [*args, state]
        if owner is not None:
            conditions, args = [*conditions, "owner = %s"], [*args, owner]
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        query = f"{_SELECT_JOB}{where} ORDER BY created_at DESC, job_id LIMIT %s OFFSET %s"
        rows = self._run(lambda conn: conn.execute(query, (*args, limit, offset)).fetchall())
        return [record_from_row(row) for row in rows]

    def count_queued(self) -> int:
        """How many jobs wait to be claimed."""
        return self._run(lambda conn: conn.execute("SELECT count(*) FROM jobs WHERE state = 1").fetchone()[0])

    def claim(self, holder: str, lease_s: float) -> JobRecord | None:
        """The oldest waiting (or orphaned) job, now RUNNING under `holder`'s new lease."""

        def claim(conn: psycopg.Connection) -> JobRecord | None:
            while True:
                row = conn.execute(
                    f"{_SELECT_JOB} WHERE state = 1 OR (state = 2 AND lease_expires < {_NOW})"
                    " ORDER BY created_at, job_id LIMIT 1 FOR UPDATE SKIP LOCKED"
                ).fetchone()
                if row is None:
                    return None
                record = record_from_row(row)
                if record.cancel_reason:
                    text = error_text(grpc.StatusCode.CANCELLED, record.cancel_reason)
                    self._end(conn, record.job_id, CANCELLED, text)
                    _notify(conn, JOB_CHANGED, record.job_id)
                    continue
                conn.execute(
                    f"UPDATE jobs SET state = 2, lease_holder = %s, lease_expires = {_NOW} + %s,"
                    " attempt = attempt + 1, updated_at = %s WHERE job_id = %s",
                    (holder, lease_s, time.time(), record.job_id),
                )
                conn.execute("DELETE FROM events WHERE job_id = %s", (record.job_id,))
                return self._get(conn, record.job_id)

        return self._run(claim)

    @staticmethod
    def _end(
        conn: psycopg.Connection, job_id: str, state: int, error: str, result: bytes | None = None
    ) -> None:
        conn.execute(
            f"UPDATE jobs SET state = %s, error = %s, result = %s, finished_at = {_NOW}, updated_at = %s,"
            " lease_holder = '', lease_expires = 0 WHERE job_id = %s",
            (state, error, result, time.time(), job_id),
        )
        conn.execute("DELETE FROM blocks WHERE job_id = %s", (job_id,))

    def requeue_unfinished(self) -> int:
        """Every running job back to the queue; only right for a database one gateway uses."""

        def requeue(conn: psycopg.Connection) -> int:
            conn.execute("UPDATE jobs SET state = 1, lease_holder = '', lease_expires = 0 WHERE state = 2")
            _notify(conn, JOB_QUEUED, "")
            return conn.execute("SELECT count(*) FROM jobs WHERE state = 1").fetchone()[0]

        return self._run(requeue)

    def renew(self, holder: str, leases: list[Lease], lease_s: float) -> dict[str, str]:
        """Extend the leases still held; their jobs' cancellation reasons (empty: none requested)."""
        mine = [lease for lease in leases if lease.holder == holder]
        if not mine:
            return {}

        def renew(conn: psycopg.Connection) -> dict[str, str]:
            held: dict[str, str] = {}
            for lease in mine:
                row = conn.execute(
                    f"UPDATE jobs SET lease_expires = {_NOW} + %s WHERE {_HELD} RETURNING cancel_reason",
                    (lease_s, *_held_args(lease)),
                ).fetchone()
                if row is not None:
                    held[lease.job_id] = row[0]
            return held

        return self._run(renew)

    def release(self, lease: Lease) -> None:
        """Back to the queue, kept blocks and all."""

        def release(conn: psycopg.Connection) -> None:
            released = conn.execute(
                f"UPDATE jobs SET state = 1, lease_holder = '', lease_expires = 0 WHERE {_HELD}",
                _held_args(lease),
            ).rowcount
            if released:
                _notify(conn, JOB_QUEUED, lease.job_id)

        self._run(release)

    def update_progress(
        self, lease: Lease, blocks_done: int, max_blocks: int, seconds_generated: float
    ) -> None:
        """Record how far the song is."""

        def update(conn: psycopg.Connection) -> int:
            return conn.execute(
                "UPDATE jobs SET blocks_done = %s, max_blocks = %s, seconds_generated = %s, updated_at = %s"
                f" WHERE {_HELD}",
                (blocks_done, max_blocks, seconds_generated, time.time(), *_held_args(lease)),
            ).rowcount

        if not self._run(update):
            raise LeaseLostError(f"job {lease.job_id}: attempt {lease.attempt} no longer holds the lease")

    @staticmethod
    def _insert_event(conn: psycopg.Connection, lease: Lease, seq: int, event: song_pb2.SongEvent) -> None:
        conn.execute(
            "INSERT INTO events (job_id, attempt, seq, event) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (lease.job_id, lease.attempt, seq, event.SerializeToString()),
        )
        _notify(conn, JOB_CHANGED, lease.job_id)

    def append_event(self, lease: Lease, seq: int, event: song_pb2.SongEvent) -> None:
        """Keep the `seq`-th event of the lease's attempt and announce it."""

        def append(conn: psycopg.Connection) -> None:
            self._check_held(conn, lease)
            self._insert_event(conn, lease, seq, event)

        self._run(append)

    def events(self, job_id: str, attempt: int, after_seq: int) -> list[StoredEvent]:
        """The job's events after (`attempt`, `after_seq`), in order."""
        rows = self._run(
            lambda conn: conn.execute(
                "SELECT attempt, seq, event FROM events WHERE job_id = %s"
                " AND (attempt > %s OR (attempt = %s AND seq > %s)) ORDER BY attempt, seq",
                (job_id, attempt, attempt, after_seq),
            ).fetchall()
        )
        return [StoredEvent(a, s, song_pb2.SongEvent.FromString(bytes(data))) for a, s, data in rows]

    def add_block(self, lease: Lease, block: Block, model: ModelIdentity) -> None:
        """Keep a finished block with the model that made it."""

        stored = block_values(block)

        def add(conn: psycopg.Connection) -> None:
            self._check_held(conn, lease)
            conn.execute(
                f"INSERT INTO blocks (job_id, {BLOCK_COLUMNS})"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (job_id, block_index) DO UPDATE SET final = excluded.final,"
                " max_blocks = excluded.max_blocks, frames = excluded.frames, latents = excluded.latents,"
                " model = excluded.model, revision = excluded.revision, dtype = excluded.dtype,"
                " frames_done = excluded.frames_done, candidate = excluded.candidate",
                (
                    lease.job_id,
                    block.index,
                    bool(stored[0]),  # `final` is a BOOLEAN column here
                    *stored[1:4],
                    model.name,
                    model.revision,
                    *stored[4:],
                ),
            )

        self._run(add)

    def blocks(self, job_id: str) -> KeptBlocks:
        """The job's kept blocks from block 0 on, with the model that made them."""
        rows = self._run(
            lambda conn: conn.execute(
                f"SELECT {BLOCK_COLUMNS} FROM blocks WHERE job_id = %s ORDER BY block_index", (job_id,)
            ).fetchall()
        )
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
        data = None if result is None else result.SerializeToString()

        def finish(conn: psycopg.Connection) -> None:
            if (
                conn.execute(f"SELECT 1 FROM jobs WHERE {_HELD} FOR UPDATE", _held_args(lease)).fetchone()
                is None
            ):
                raise LeaseLostError(f"job {lease.job_id}: attempt {lease.attempt} no longer holds the lease")
            if last_event is not None:
                self._insert_event(conn, lease, last_seq, last_event)
            self._end(conn, lease.job_id, state, error, data)
            _notify(conn, JOB_CHANGED, lease.job_id)

        self._run(finish)

    def request_cancel(self, job_id: str, reason: str) -> JobRecord | None:
        """Cancel a queued job at once, flag a running one; None for an unknown id."""

        def cancel(conn: psycopg.Connection) -> JobRecord | None:
            record = self._get(conn, job_id, lock=True)
            if record is None:
                return None
            if record.state == QUEUED:
                self._end(conn, job_id, CANCELLED, error_text(grpc.StatusCode.CANCELLED, reason))
                _notify(conn, JOB_CHANGED, job_id)
            elif record.state == RUNNING and not record.cancel_reason:
                conn.execute("UPDATE jobs SET cancel_reason = %s WHERE job_id = %s", (reason, job_id))
                _notify(conn, CANCEL_REQUESTED, job_id)
            return self._get(conn, job_id)

        return self._run(cancel)

    def delete(self, job_id: str) -> bool:
        """Remove a finished job, its blocks and events."""

        def delete(conn: psycopg.Connection) -> bool:
            deleted = conn.execute(
                f"DELETE FROM jobs WHERE job_id = %s AND state IN {_FINISHED_SQL}", (job_id,)
            ).rowcount
            if deleted:
                conn.execute("DELETE FROM events WHERE job_id = %s", (job_id,))
                conn.execute("DELETE FROM blocks WHERE job_id = %s", (job_id,))
            return bool(deleted)

        return self._run(delete)

    def sweep(self, finished_before: float, events_finished_before: float) -> list[JobRecord]:
        """Remove jobs finished before `finished_before` (returned) and older finished jobs' events."""

        def sweep(conn: psycopg.Connection) -> list[JobRecord]:
            rows = conn.execute(
                f"DELETE FROM jobs WHERE state IN {_FINISHED_SQL} AND finished_at < %s"
                f" RETURNING {JOB_COLUMNS}",
                (finished_before,),
            ).fetchall()
            expired = [record_from_row(row) for row in rows]
            ids = [record.job_id for record in expired]
            conn.execute("DELETE FROM blocks WHERE job_id = ANY(%s)", (ids,))
            conn.execute(
                "DELETE FROM events e WHERE e.job_id = ANY(%s) OR EXISTS (SELECT 1 FROM jobs j"
                f" WHERE j.job_id = e.job_id AND j.state IN {_FINISHED_SQL} AND j.finished_at < %s)",
                (ids, events_finished_before),
            )
            return expired

        return self._run(sweep)

    def listen(self, on_signal: Signal) -> None:
        """Call `on_signal` for every change announced by any gateway (a LISTEN connection)."""
        self._listeners.append(on_signal)
        if self._listener is None:
            self._listener = threading.Thread(target=self._listen, name="jobs-listen", daemon=True)
            self._listener.start()

    def _signal(self, kind: str, job_id: str) -> None:
        for listener in list(self._listeners):
            listener(kind, job_id)

    def _listen(self) -> None:
        """Hold a LISTEN connection, reconnecting after failures (each reconnection says RESYNC)."""
        while not self._closing.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._signal(RESYNC, "")
                    while not self._closing.is_set():
                        for note in conn.notifies(timeout=0.5):
                            kind, _, job_id = note.payload.partition(":")
                            self._signal(kind, job_id)
            except psycopg.OperationalError as exc:
                log.warning("jobs database notifications lost (%s); reconnecting", exc)
                self._closing.wait(0.5)

    def close(self) -> None:
        """Stop listening and close the pool."""
        self._closing.set()
        if self._listener is not None:
            self._listener.join(timeout=5)
        self._pool.close()
