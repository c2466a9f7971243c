"""Jobs on disk: SQLite tables of job records and of each running job's finished blocks (with the
model revision that made them), so nothing is lost when the gateway restarts: a job that was running
resumes from its last block, on the same model weights."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from gateway.stages import Block
from songsmith.v1 import song_pb2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    request BLOB NOT NULL,
    seed TEXT NOT NULL,
    state INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    blocks_done INTEGER NOT NULL DEFAULT 0,
    max_blocks INTEGER NOT NULL DEFAULT 0,
    seconds_generated REAL NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    result BLOB
);
CREATE INDEX IF NOT EXISTS jobs_by_time ON jobs (created_at);
CREATE TABLE IF NOT EXISTS blocks (
    job_id TEXT NOT NULL,
    block_index INTEGER NOT NULL,
    final INTEGER NOT NULL,
    max_blocks INTEGER NOT NULL,
    frames_done INTEGER NOT NULL,
    dtype TEXT NOT NULL,
    shape TEXT NOT NULL,
    data BLOB NOT NULL,
    revision TEXT NOT NULL,
    PRIMARY KEY (job_id, block_index)
);
"""
UNFINISHED = (song_pb2.JOB_STATE_QUEUED, song_pb2.JOB_STATE_RUNNING)


def fingerprint(request: song_pb2.SongRequest) -> str:
    """A digest of what a request asks for (its job id aside), to tell a replay from a conflict."""
    copy = song_pb2.SongRequest()
    copy.CopyFrom(request)
    copy.job_id = ""
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


@dataclass
class JobRecord:
    """One stored job."""

    job_id: str
    fingerprint: str
    request: song_pb2.SongRequest
    seed: int
    state: int
    created_at: float
    updated_at: float
    blocks_done: int = 0
    max_blocks: int = 0
    seconds_generated: float = 0.0
    error: str = ""
    result: song_pb2.SongSummary | None = field(default=None)

    def to_proto(self) -> song_pb2.Job:
        """The job as the API reports it."""
        created, updated, generated = Timestamp(), Timestamp(), Duration()
        created.FromNanoseconds(round(self.created_at * 1e9))
        updated.FromNanoseconds(round(self.updated_at * 1e9))
        generated.FromNanoseconds(round(self.seconds_generated * 1e9))
        job = song_pb2.Job(
            job_id=self.job_id,
            state=self.state,
            create_time=created,
            update_time=updated,
            blocks_done=self.blocks_done,
            max_blocks=self.max_blocks,
            generated=generated,
            error=self.error,
            seed=self.seed,
            model=self.request.model,
        )
        if self.result is not None:
            job.result.CopyFrom(self.result)
        return job


class JobStore:
    """Thread-safe access to the jobs table of one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        """Open (creating if needed) the database at `path`."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def insert_if_absent(self, record: JobRecord) -> JobRecord:
        """Store `record` unless its job id exists; return the stored record either way."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO jobs"
                " (job_id, fingerprint, request, seed, state, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.job_id,
                    record.fingerprint,
                    record.request.SerializeToString(),
                    str(record.seed),
                    record.state,
                    record.created_at,
                    record.updated_at,
                ),
            )
        stored = self.get(record.job_id)
        assert stored is not None
        return stored

    def update(self, job_id: str, **changes: object) -> None:
        """Change some columns of a job (and its update time)."""
        if "result" in changes and changes["result"] is not None:
            changes["result"] = changes["result"].SerializeToString()  # type: ignore[union-attr]
        changes["updated_at"] = time.time()
        columns = ", ".join(f"{name} = ?" for name in changes)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {columns} WHERE job_id = ?", (*changes.values(), job_id))

    def get(self, job_id: str) -> JobRecord | None:
        """The job with this id, or None."""
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else self._record(row)

    def list(
        self, limit: int, state: int = song_pb2.JOB_STATE_UNSPECIFIED, offset: int = 0
    ) -> list[JobRecord]:
        """Up to `limit` jobs after the first `offset`, newest first, optionally only those in `state`."""
        query, args = "SELECT * FROM jobs", []
        if state != song_pb2.JOB_STATE_UNSPECIFIED:
            query, args = query + " WHERE state = ?", [state]
        query += " ORDER BY created_at DESC, job_id LIMIT ? OFFSET ?"
        with self._lock:
            rows = self._db.execute(query, (*args, limit, offset)).fetchall()
        return [self._record(row) for row in rows]

    def add_block(self, job_id: str, block: Block) -> None:
        """Keep a finished block of a running job (and the revision that made it), so a restart
        resumes after it."""
        frames = np.ascontiguousarray(block.frames)
        little_endian = frames.astype(frames.dtype.newbyteorder("<"), copy=False)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO blocks"
                " (job_id, block_index, final, max_blocks, frames_done, dtype, shape, data, revision)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    block.index,
                    int(block.final),
                    block.max_blocks,
                    block.frames_done,
                    little_endian.dtype.str,
                    ",".join(str(size) for size in frames.shape),
                    little_endian.tobytes(),
                    block.revision,
                ),
            )

    def blocks(self, job_id: str) -> list[Block]:
        """The job's kept blocks from block 0 on, as far as they run without a gap."""
        with self._lock:
            rows = self._db.execute(
                "SELECT block_index, final, max_blocks, frames_done, dtype, shape, data, revision"
                " FROM blocks WHERE job_id = ? ORDER BY block_index",
                (job_id,),
            ).fetchall()
        kept: list[Block] = []
        for index, final, max_blocks, frames_done, dtype, shape, data, revision in rows:
            if index != len(kept):
                break
            dims = tuple(int(size) for size in shape.split(",") if size)
            frames = np.frombuffer(data, dtype=np.dtype(dtype)).reshape(dims)
            kept.append(
                Block(
                    index,
                    frames.astype(frames.dtype.newbyteorder("=")),
                    bool(final),
                    max_blocks,
                    frames_done,
                    revision,
                )
            )
        return kept

    def drop_blocks(self, job_id: str) -> None:
        """Forget a job's blocks once it has ended (its audio, if any, is in the results folder)."""
        with self._lock:
            self._db.execute("DELETE FROM blocks WHERE job_id = ?", (job_id,))

    def unfinished(self) -> list[JobRecord]:
        """Jobs left queued or running, oldest first (to resume after a restart)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE state IN (?, ?) ORDER BY created_at", UNFINISHED
            ).fetchall()
        return [self._record(row) for row in rows]

    @staticmethod
    def _record(row: tuple) -> JobRecord:
        (
            job_id,
            digest,
            request,
            seed,
            state,
            created,
            updated,
            blocks,
            max_blocks,
            seconds,
            error,
            result,
        ) = row
        return JobRecord(
            job_id=job_id,
            fingerprint=digest,
            request=song_pb2.SongRequest.FromString(request),
            seed=int(seed),
            state=state,
            created_at=created,
            updated_at=updated,
            blocks_done=blocks,
            max_blocks=max_blocks,
            seconds_generated=seconds,
            error=error,
            result=None if result is None else song_pb2.SongSummary.FromString(result),
        )

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
