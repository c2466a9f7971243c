"""The job store interface: what the job manager keeps about songs, whichever database holds it.

Two implementations, one file each under `gateway/stores/`: SQLite (`sqlite.py`, the embedded
default for one gateway) and PostgreSQL (`postgresql.py`, for several gateways serving one queue).
`gateway.stores.open_job_store` picks one from `SONGSMITH_JOBS_DB`: a `postgresql://` URL or a path.

A job is run under a lease: `claim` hands the oldest waiting job (or one whose runner stopped
renewing its lease) to one gateway, which renews the lease while it runs the song. Every write a
runner makes names its `Lease`; a runner that lost its lease (another gateway took the job over)
gets `LeaseLostError` instead of overwriting the new runner's work. The events a runner emits are
kept per attempt, so a gateway that is not running a job relays them to its watchers.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from gateway.stages import Block
from services.runtime import errors
from services.runtime.errors import ServiceError, UnavailableError
from songsmith.v1 import song_pb2

UNFINISHED = (song_pb2.JOB_STATE_QUEUED, song_pb2.JOB_STATE_RUNNING)
FINISHED = (song_pb2.JOB_STATE_SUCCEEDED, song_pb2.JOB_STATE_FAILED, song_pb2.JOB_STATE_CANCELLED)

# Signals a store sends to the gateways using it (see `JobStore.listen`).
JOB_QUEUED = "queued"  # a job is waiting to be claimed
JOB_CHANGED = "changed"  # a job has a new event or a new state
CANCEL_REQUESTED = "cancel"  # someone asked a job to stop
RESYNC = "resync"  # signals may have been missed (the database connection was lost): look again


def fingerprint(request: song_pb2.SongRequest) -> str:
    """A digest of what a request asks for (its job id aside), to tell a replay from a conflict."""
    copy = song_pb2.SongRequest()
    copy.CopyFrom(request)
    copy.job_id = ""
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


_FIELD_PATH = re.compile(r"[A-Za-z_][\w.\[\]]*")


def error_text(code: grpc.StatusCode, message: str) -> str:
    """How a job's error is stored: `CODE_NAME: message`."""
    return f"{code.name}: {message}"


def error_from_text(text: str) -> ServiceError:
    """The typed error a stored error text stands for (INTERNAL for an unknown code); an
    INVALID_ARGUMENT keeps its field violations, which its message lists as `field: description; ...`."""
    code_name, _, message = text.partition(": ")
    code = grpc.StatusCode.__members__.get(code_name, grpc.StatusCode.INTERNAL)
    violations = _violations(message) if code == grpc.StatusCode.INVALID_ARGUMENT else []
    if violations:
        return errors.InvalidArgumentError(violations=violations)
    return errors.error_for_code(code, message)


def _violations(message: str) -> list[errors.FieldViolation]:
    found: list[errors.FieldViolation] = []
    for part in message.split("; "):
        field, separator, description = part.partition(": ")
        if separator and _FIELD_PATH.fullmatch(field):
            found.append(errors.FieldViolation(field, description))
        elif found:
            last = found[-1]
            found[-1] = errors.FieldViolation(last.field, f"{last.description}; {part}")
        else:
            return []
    return found


@dataclass
class JobRecord:
    """One stored job.

    `owner` is the identity that submitted it (empty without authentication). `deadline_at` is the
    wall-clock time (seconds since the epoch) by which the song must be done. `attempt` counts the
    claims so far; `lease_holder` is the gateway running it now (empty when none is).
    `trace_context` is the W3C trace context (`traceparent`, `tracestate`) of the call that
    submitted it, so the song continues that trace on whichever gateway runs it.
    """

    job_id: str
    fingerprint: str
    request: song_pb2.SongRequest
    seed: int
    state: int
    created_at: float
    updated_at: float
    owner: str = ""
    deadline_at: float = 0.0
    blocks_done: int = 0
    max_blocks: int = 0
    seconds_generated: float = 0.0
    error: str = ""
    result: song_pb2.SongSummary | None = field(default=None)
    finished_at: float = 0.0
    attempt: int = 0
    lease_holder: str = ""
    cancel_reason: str = ""
    trace_context: dict[str, str] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """True once the job succeeded, failed or was cancelled."""
        return self.state in FINISHED

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


@dataclass(frozen=True)
class Lease:
    """The right of one gateway (`holder`) to run one attempt of a job; every runner write names it."""

    job_id: str
    holder: str
    attempt: int


@dataclass(frozen=True)
class ModelIdentity:
    """The model that made a kept block: its served name and its revision (the weights' sha256)."""

    name: str
    revision: str


@dataclass(frozen=True)
class KeptBlocks:
    """A job's kept blocks from block 0 on, without gaps, all made by one model (None when no block
    is kept); each block carries that model's revision. A resume against another revision must start
    over (the pipeline does: see `gateway.pipeline`)."""

    model: ModelIdentity | None
    blocks: list[Block]


@dataclass(frozen=True)
class StoredEvent:
    """One event a runner emitted: `seq` counts from 1 within its `attempt`."""

    attempt: int
    seq: int
    event: song_pb2.SongEvent


class StoreUnavailableError(UnavailableError):
    """The database could not be reached within the store's retry budget."""


class LeaseLostError(Exception):
    """A runner wrote under a lease it no longer holds: another gateway runs the job now."""


Signal = Callable[[str, str], None]


class JobStore(Protocol):
    """Where jobs, their kept blocks and their events live. Every method is thread-safe.

    Connection failures are retried with bounded backoff; past the store's retry budget a method
    raises StoreUnavailableError (UNAVAILABLE).
    """

    shared: bool
    """True when several gateways may use the store at once (leases then expire by time only)."""

    def schema_version(self) -> int:
        """The newest schema migration applied (see `gateway.stores.migrations`)."""
        ...

    def usable(self, timeout_s: float) -> bool:
        """Whether the store can take a write now: asked once, answered within about `timeout_s`
        (no retries), for the gateway's health."""
        ...

    def insert_if_absent(self, record: JobRecord) -> tuple[JobRecord, bool]:
        """Store `record` (state QUEUED) unless its job id exists; return the stored record and
        whether it was inserted. Two gateways inserting one id at once make one job."""
        ...

    def get(self, job_id: str) -> JobRecord | None:
        """The job with this id, or None."""
        ...

    def list(
        self,
        limit: int,
        state: int = song_pb2.JOB_STATE_UNSPECIFIED,
        owner: str | None = None,
        offset: int = 0,
    ) -> list[JobRecord]:
        """Up to `limit` jobs after the first `offset`, newest first; only those in `state` (unless
        UNSPECIFIED) and only those of `owner` (unless None)."""
        ...

    def count_queued(self) -> int:
        """How many jobs wait to be claimed."""
        ...

    def claim(self, holder: str, lease_s: float) -> JobRecord | None:
        """Give `holder` the oldest job that is queued, or running under an expired lease, as
        RUNNING under a new lease of `lease_s` seconds (its attempt counts up and the events of
        earlier attempts go); None when no job waits. A job whose cancellation was requested
        while no one held it is marked CANCELLED instead of being handed out."""
        ...

    def requeue_unfinished(self) -> int:
        """Put every running job back in the queue, dropping its lease; return how many jobs are
        unfinished. Only for a store that one gateway uses (after that gateway restarted)."""
        ...

    def renew(self, holder: str, leases: list[Lease], lease_s: float) -> dict[str, str]:
        """Extend the leases `holder` still holds by `lease_s` seconds; return, for each job whose
        lease it still holds, the reason its cancellation was requested (empty when it was not)."""
        ...

    def release(self, lease: Lease) -> None:
        """Give a job back to the queue (this gateway stops); its kept blocks stay for the next runner."""
        ...

    def update_progress(
        self, lease: Lease, blocks_done: int, max_blocks: int, seconds_generated: float
    ) -> None:
        """Record how far the song is."""
        ...

    def append_event(self, lease: Lease, seq: int, event: song_pb2.SongEvent) -> None:
        """Keep the `seq`-th event of the lease's attempt, for relays on other gateways (idempotent)."""
        ...

    def events(self, job_id: str, attempt: int, after_seq: int) -> list[StoredEvent]:
        """The job's events after (`attempt`, `after_seq`), in order; later attempts' from seq 1."""
        ...

    def add_block(self, lease: Lease, block: Block, model: ModelIdentity) -> None:
        """Keep a finished block and the model that made it, so a new runner resumes after it."""
        ...

    def blocks(self, job_id: str) -> KeptBlocks:
        """The job's kept blocks from block 0 on, as far as they run without a gap, with their model."""
        ...

    def finish(
        self,
        lease: Lease,
        state: int,
        error: str = "",
        result: song_pb2.SongSummary | None = None,
        last_event: song_pb2.SongEvent | None = None,
        last_seq: int = 0,
    ) -> None:
        """End the job in `state` (its kept blocks go); `last_event` (the `done` event, as the
        `last_seq`-th of the attempt) is kept in the same transaction."""
        ...

    def request_cancel(self, job_id: str, reason: str) -> JobRecord | None:
        """Stop a job: a queued one is CANCELLED at once, a running one is flagged (its runner
        stops it); a finished one is left alone. Returns the job afterwards, None if unknown."""
        ...

    def delete(self, job_id: str) -> bool:
        """Remove a finished job with its blocks and events; False when there is no such job."""
        ...

    def sweep(self, finished_before: float, events_finished_before: float) -> list[JobRecord]:
        """Remove jobs that finished before `finished_before` (returned, so their results can be
        deleted) and the events of jobs that finished before `events_finished_before`."""
        ...

    def listen(self, on_signal: Signal) -> None:
        """Call `on_signal(kind, job_id)` for every JOB_QUEUED, JOB_CHANGED and CANCEL_REQUESTED
        made by any gateway on this store (and RESYNC after signals may have been lost)."""
        ...

    def close(self) -> None:
        """Close the connections."""
        ...
