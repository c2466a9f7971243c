"""Song jobs: idempotent submission by client-chosen id, one queue shared by every gateway on the
store, exactly one runner per job, live and relayed events, cancellation from any gateway, results
kept for every gateway, ownership, retention, and resumption of jobs whose runner stopped.

Each gateway runs a dispatcher that claims waiting jobs while it has free slots, and a heartbeat
that renews the leases of the jobs it runs, stops those whose cancellation was requested (by any
gateway) or whose lease it lost, and removes expired jobs. A runner keeps each finished latent
block, so whoever claims the job next (after a restart, or after this gateway's lease expired)
resumes after the last kept block and the song comes out the same. Every event a runner emits is
also kept in the store: a watcher on another gateway gets the same events, relayed.

A job keeps the trace context of the call that submitted it, so its song is one trace with that call
whichever gateway runs it (a resumed run: a new trace linked to it; see `gateway/song_trace.py`).

A store that becomes unusable (a lock held elsewhere, a database restart) never wedges a job: every
store call retries with bounded backoff for the store's retry budget, a job's outcome (the finished
song, its failure) is written again until it lands, and the gateway's health is NOT_SERVING for as
long as a probe of the store fails.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc

from gateway.audio import CONTAINERS
from gateway.auth import ANONYMOUS, Caller
from gateway.job_store import (
    CANCEL_REQUESTED,
    JOB_CHANGED,
    JOB_QUEUED,
    RESYNC,
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
from gateway.pipeline import Pipeline
from gateway.results import ResultStore, ResultWriter
from gateway.song_metrics import SongMeter, forget_gateway, job_finished, prepare_gateway
from gateway.song_trace import song_failed, song_span, trace_carrier
from gateway.stages import Block
from gateway.validation import RequestLimits, audio_format, draw_seed, song_spec, validate_song
from services.runtime import errors
from services.runtime.cancellation import CancellationToken
from services.runtime.codec import MAX_CHUNK_BYTES
from services.runtime.errors import ServiceError
from services.runtime.logs import job_scope
from songsmith.v1 import song_pb2

log = logging.getLogger(__name__)

# Events of a finished job stay this long for relays still catching up; later watchers replay the
# stored result instead.
EVENTS_KEPT_S = 60.0
# How often a gateway removes expired jobs (more often when the retention is shorter than 4 of these).
SWEEP_INTERVAL_S = 60.0
SHUTTING_DOWN = "the gateway is shutting down"
# How long a submission waits for a model's generation stage to say what it hosts.
MODEL_INFO_TIMEOUT_S = 5.0
DEFAULT_PAGE_SIZE = 50
# How often the store is probed for the gateway's health, and how long a probe may take.
STORE_PROBE_INTERVAL_S = 1.0
STORE_PROBE_TIMEOUT_S = 1.0
# A job's outcome that the store would not take is written again after a backoff from the first to
# the longest of these, until it lands (or the gateway stops: the job then resumes on the next one).
OUTCOME_RETRY_FIRST_S = 0.5
OUTCOME_RETRY_MAX_S = 5.0


@dataclass(frozen=True)
class JobSettings:
    """Songs run at once and waiting, time limits, leases, polling and retention.

    `lease_s`: a gateway that stops renewing (it died, or lost the database) loses its jobs after
    this long, and another gateway resumes them. `poll_s`: how often a gateway looks for waiting
    jobs, cancellations and new events when no notification came. `retention_s`: finished jobs and
    their results are removed this long after they finished (0 keeps them).
    """

    max_running: int = 1
    max_queued: int = 64
    job_timeout_s: float = 3600.0
    lease_s: float = 15.0
    poll_s: float = 0.5
    retention_s: float = 7 * 24 * 3600.0


def _accepted(record: JobRecord) -> song_pb2.SongEvent:
    """A job's first event: its id, seed and model."""
    accepted = song_pb2.Accepted(job_id=record.job_id, seed=record.seed, model=record.request.model)
    return song_pb2.SongEvent(accepted=accepted)


def _page_offset(token: str) -> int:
    """The position a ListJobs page token stands for; INVALID_ARGUMENT for one no gateway gave."""
    if not token:
        return 0
    if not token.isdigit():
        raise errors.InvalidArgumentError("page_token", "not a token from a previous ListJobs page")
    return int(token)


class _LiveJob:
    """A job this gateway runs: its lease, cancellation token and every event so far, for watchers."""

    def __init__(self, lease: Lease, token: CancellationToken, meter: SongMeter) -> None:
        self.lease = lease
        self.token = token
        self.meter = meter
        self.events: list[song_pb2.SongEvent] = []
        self.error: ServiceError | None = None
        self.finished = False
        # Stopped without an outcome (lease lost, database unreachable): the job goes on elsewhere.
        self.interrupted = False
        # The outcome is in the store (set under `publishing`, which also orders the events).
        self.outcome_recorded = False
        self.publishing = threading.Lock()
        self._changed = threading.Condition()

    def emit(self, event: song_pb2.SongEvent) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def finish(self, error: ServiceError | None, interrupted: bool = False) -> None:
        """The job has ended here (the first call counts)."""
        with self._changed:
            if self.finished:
                return
            self.error = error
            self.interrupted = interrupted
            self.finished = True
            self._changed.notify_all()

    def follow(
        self, watcher: CancellationToken, delivery: _Delivery
    ) -> Generator[song_pb2.SongEvent, None, bool]:
        """Every event not yet delivered, then live ones, until the job ends here (raising its
        error); returns False when the job was interrupted here and goes on elsewhere."""
        read = 0
        while True:
            with self._changed:
                while read == len(self.events) and not self.finished:
                    self._changed.wait(0.1)
                    watcher.check()
                pending, done = self.events[read:], self.finished
            read += len(pending)
            for event in pending:
                if delivery.admit(event):
                    yield event
            if done and read == len(self.events):
                if self.interrupted:
                    return False
                if self.error is not None:
                    raise self.error
                return True


class _Delivery:
    """The events one watcher was sent, so that a run that starts over (after a takeover) does not
    send them again: the song is deterministic, so a new run repeats the events of the last."""

    def __init__(self) -> None:
        self._sent: Counter[bytes] = Counter()
        self._owed: Counter[bytes] = Counter()

    def new_run(self) -> None:
        """The next events come from a run that starts from the beginning."""
        self._owed = self._sent.copy()

    def admit(self, event: song_pb2.SongEvent) -> bool:
        """True when `event` is to be sent (and counts it as sent)."""
        digest = hashlib.sha256(event.SerializeToString(deterministic=True)).digest()
        if self._owed[digest] > 0:
            self._owed[digest] -= 1
            return False
        self._sent[digest] += 1
        return True


class JobManager:
    """Runs song jobs over a pipeline; keeps their records in a store and results in a result store."""

    def __init__(
        self,
        store: JobStore,
        pipeline: Pipeline,
        results: ResultStore,
        settings: JobSettings | None = None,
        limits: RequestLimits | None = None,
    ) -> None:
        """Jobs are recorded in `store` and their audio kept in `results`; nothing runs until `start`."""
        self.store = store
        self.pipeline = pipeline
        self.results = results
        self.settings = settings or JobSettings()
        self.limits = limits or RequestLimits()
        self.holder = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:6]}"
        self._live: dict[str, _LiveJob] = {}
        self._relays: defaultdict[str, set[threading.Event]] = defaultdict(set)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._work = threading.Event()
        self._beat = threading.Event()
        self._workers = ThreadPoolExecutor(self.settings.max_running, thread_name_prefix="job")
        self._threads: list[threading.Thread] = []
        self._health_reports: list[Callable[[bool], None]] = []
        store.listen(self._on_signal)
        prepare_gateway([model.name for model in pipeline.router.models], self)

    def live_states(self) -> dict[str, int]:
        """`songsmith_jobs`: the jobs waiting in the queue (shared by every gateway on the store) and
        the jobs this gateway runs now."""
        with self._lock:
            running = sum(1 for job in self._live.values() if not job.finished)
        try:
            return {"queued": self.store.count_queued(), "running": running}
        except StoreUnavailableError:
            return {"running": running}

    def start(self) -> int:
        """Start claiming and running jobs. A store only this gateway uses gets its running jobs
        (left by a previous process) back in the queue first; returns how many jobs wait then
        (for a shared store, 0: other gateways' jobs are taken over only when their leases expire)."""
        waiting = 0 if self.store.shared else self.store.requeue_unfinished()
        for name, loop in (("jobs-dispatch", self._dispatch), ("jobs-heartbeat", self._heartbeat)):
            thread = threading.Thread(target=loop, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return waiting

    def result_name(self, record: JobRecord, candidate: int = 0) -> str:
        """The name of a job's audio in the result store: `<job_id>.<extension>`, and for candidate
        i > 0 of a request for several `<job_id>~<i>.<extension>` (`~` is never part of a job id)."""
        extension = CONTAINERS[audio_format(record.request)].extension
        stem = record.job_id if candidate == 0 else f"{record.job_id}~{candidate}"
        return f"{stem}.{extension}"

    def result_names(self, record: JobRecord) -> list[str]:
        """The names of every file of a finished job (one per candidate; one for a single song)."""
        count = len(record.result.candidates) if record.result is not None else 0
        return [self.result_name(record, candidate) for candidate in range(max(1, count))]

    @staticmethod
    def charts_name(record: JobRecord) -> str:
        """The name of a job's `.osz` (its charts and audio) in the result store."""
        return f"{record.job_id}.osz"

    def watch_health(self, report: Callable[[bool], None]) -> None:
        """Call `report(False)` when the job store stops taking writes and `report(True)` when it
        takes them again (probed every STORE_PROBE_INTERVAL_S on a thread of its own)."""
        with self._lock:
            self._health_reports.append(report)
            first = len(self._health_reports) == 1
        if first:
            thread = threading.Thread(target=self._probe_store, name="jobs-health", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _probe_store(self) -> None:
        usable = True
        while not self._stopping.is_set():
            now_usable = self.store.usable(STORE_PROBE_TIMEOUT_S)
            if now_usable != usable:
                usable = now_usable
                if not usable:
                    log.warning("the jobs database takes no writes: health is NOT_SERVING until it does")
                with self._lock:
                    reports = list(self._health_reports)
                for report in reports:
                    report(usable)
            self._stopping.wait(STORE_PROBE_INTERVAL_S)

    # Submission and the queue.

    def submit(
        self, request: song_pb2.SongRequest, caller: Caller = ANONYMOUS, deadline: float | None = None
    ) -> tuple[song_pb2.Job, bool]:
        """Queue a job for `request` unless its id exists; return the job and whether it is new.
        `deadline` (a `time.monotonic()` value) shortens the job's time limit.

        Raises INVALID_ARGUMENT for a bad request or inputs the model cannot use, FAILED_PRECONDITION
        for charts asked of a gateway without a chart stage, NOT_FOUND for a model the gateway does
        not route to, ALREADY_EXISTS when the id belongs to a different
        request or to another identity, RESOURCE_EXHAUSTED when the queue is full.
        """
        router = self.pipeline.router
        timeout = CancellationToken.with_timeout(MODEL_INFO_TIMEOUT_S)
        chart_info = (lambda: router.chart_info(timeout)) if router.chart is not None else None
        validate_song(request, self.limits, lambda: router.get(request.model).info(timeout), chart_info)
        model = router.get(request.model)
        job_id = request.job_id or uuid.uuid4().hex
        digest = fingerprint(request)
        existing = self.store.get(job_id)
        if existing is not None:
            return self._existing(existing, digest, caller), False
        waiting = self.store.count_queued()
        if waiting >= self.settings.max_queued:
            raise errors.ResourceExhaustedError(
                f"{waiting} songs are waiting; the queue is full", retry_after_s=30.0
            )
        seed = request.seed if request.HasField("seed") else draw_seed()
        stored = song_pb2.SongRequest()
        stored.CopyFrom(request)
        stored.job_id = job_id
        stored.model = model.name
        now = time.time()
        deadline_at = now + self.settings.job_timeout_s
        if deadline is not None:
            deadline_at = min(deadline_at, now + deadline - time.monotonic())
        record, created = self.store.insert_if_absent(
            JobRecord(
                job_id,
                digest,
                stored,
                seed,
                song_pb2.JOB_STATE_QUEUED,
                now,
                now,
                caller.identity,
                deadline_at,
                trace_context=trace_carrier(),
            )
        )
        if not created:
            return self._existing(record, digest, caller), False
        self._work.set()
        return record.to_proto(), True

    @staticmethod
    def _existing(record: JobRecord, digest: str, caller: Caller) -> song_pb2.Job:
        if record.owner != caller.identity or record.fingerprint != digest:
            raise errors.AlreadyExistsError(f"job {record.job_id} exists with a different request")
        return record.to_proto()

    def _on_signal(self, kind: str, job_id: str) -> None:
        """A store signal: wake the dispatcher, the heartbeat or the relays it concerns."""
        if kind in (JOB_QUEUED, RESYNC):
            self._work.set()
        if kind in (CANCEL_REQUESTED, RESYNC):
            self._beat.set()
        if kind in (JOB_CHANGED, RESYNC):
            with self._lock:
                keys = list(self._relays) if kind == RESYNC else [job_id]
                waiting = [event for key in keys for event in self._relays.get(key, ())]
            for event in waiting:
                event.set()

    def _dispatch(self) -> None:
        """Claim waiting jobs while slots are free; look again on a signal or every `poll_s`."""
        while not self._stopping.is_set():
            self._work.clear()
            while not self._stopping.is_set():
                with self._lock:
                    free = self.settings.max_running - len(self._live)
                if free <= 0:
                    break
                try:
                    record = self.store.claim(self.holder, self.settings.lease_s)
                except StoreUnavailableError as exc:
                    log.warning("cannot claim jobs: %s", exc.message)
                    break
                if record is None:
                    break
                self._launch(record)
            self._work.wait(self.settings.poll_s)

    def _launch(self, record: JobRecord) -> None:
        now = time.time()
        deadline_at = record.deadline_at or now + self.settings.job_timeout_s
        token = CancellationToken(time.monotonic() + deadline_at - now)
        meter = SongMeter(record.request.model, record.created_at, first_run=record.attempt <= 1)
        live = _LiveJob(Lease(record.job_id, self.holder, record.attempt), token, meter)
        with self._lock:
            stopping = self._stopping.is_set()
            if not stopping:
                self._live[record.job_id] = live
                self._workers.submit(self._run, record, live)
        if stopping:
            self._release(live.lease)
        elif record.attempt > 1:
            log.info("resuming job %s (attempt %d)", record.job_id, record.attempt)

    def _heartbeat(self) -> None:
        """Renew leases; stop jobs whose cancellation was requested or whose lease was lost; sweep."""
        next_sweep = time.monotonic()
        interval = min(self.settings.poll_s, self.settings.lease_s / 3)
        retention = self.settings.retention_s
        sweep_every = SWEEP_INTERVAL_S
        if retention > 0:
            sweep_every = min(SWEEP_INTERVAL_S, max(retention / 4, interval))
        while not self._stopping.is_set():
            self._beat.clear()
            with self._lock:
                running = [job for job in self._live.values() if not job.outcome_recorded]
            if running:
                self._renew(running)
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + sweep_every
                self._sweep()
            self._beat.wait(interval)

    def _renew(self, running: list[_LiveJob]) -> None:
        try:
            held = self.store.renew(self.holder, [job.lease for job in running], self.settings.lease_s)
        except StoreUnavailableError as exc:
            log.warning("cannot renew job leases: %s", exc.message)
            return
        for job in running:
            if job.lease.job_id not in held:
                if not job.outcome_recorded:
                    log.warning("lost the lease of job %s; another gateway runs it now", job.lease.job_id)
                    job.interrupted = True
                    job.token.cancel("another gateway took the job over")
            elif held[job.lease.job_id]:
                self._stop(job, held[job.lease.job_id])

    def _sweep(self) -> None:
        """Remove jobs (and their results) past their retention, and old events of finished jobs."""
        now = time.time()
        retention = self.settings.retention_s
        try:
            expired = self.store.sweep(
                now - retention if retention > 0 else float("-inf"), now - EVENTS_KEPT_S
            )
        except StoreUnavailableError as exc:
            log.warning("cannot remove expired jobs: %s", exc.message)
            return
        for record in expired:
            if record.result is not None:
                for name in self.result_names(record):
                    self.results.delete(name)
                self.results.delete(self.charts_name(record))
        if expired:
            log.info("removed %d jobs past their retention", len(expired))

    # Running a job.

    def _run(self, record: JobRecord, live: _LiveJob) -> None:
        error: ServiceError | None = None
        interrupted = False
        request = record.request
        seconds = request.max_duration.ToNanoseconds() / 1e9
        try:
            with (
                job_scope(record.job_id),
                song_span(
                    record.job_id,
                    request.model,
                    record.seed,
                    seconds,
                    record.trace_context,
                    resumed=record.attempt > 1,
                ) as span,
            ):
                error, interrupted = self._make_song(record, live)
                if error is not None:
                    song_failed(span, error_text(error.code, error.message))
                if live.outcome_recorded:
                    pass
                elif error is not None and self._stopping.is_set():
                    log.info("job interrupted by shutdown; another gateway (or the next one) resumes it")
                    self._release(live.lease)
                elif error is not None and live.interrupted:
                    interrupted = True
                elif error is not None:
                    interrupted = not self._end(live, error, patient=True)
        finally:
            live.finish(error, interrupted)
            with self._lock:
                self._live.pop(record.job_id, None)
            self._work.set()

    def _make_song(self, record: JobRecord, live: _LiveJob) -> tuple[ServiceError | None, bool]:
        """Run the song and store its result; returns its error (None on success) and whether it
        was interrupted without an outcome (its lease lost, or the store unreachable)."""
        lease = live.lease
        try:
            live.token.check()
            spec = song_spec(record.request, record.job_id, record.seed)
            self._publish(live, _accepted(record))

            def emit(event: song_pb2.SongEvent) -> None:
                live.meter.saw(event)
                self._publish(live, event)
                if event.HasField("progress") and event.progress.max_blocks:
                    progress = event.progress
                    seconds = progress.generated.ToNanoseconds() / 1e9
                    self.store.update_progress(lease, progress.blocks_done, progress.max_blocks, seconds)

            kept = self.store.blocks(record.job_id)
            blocks = kept.blocks if kept.model is not None and kept.model.name == record.request.model else []
            if blocks:
                log.info("resuming after block %d of a previous run", len(blocks) - 1)

            def keep(block: Block) -> None:
                self.store.add_block(lease, block, ModelIdentity(record.request.model, block.revision))

            outputs: list[ResultWriter] = []

            def output(candidate: int) -> ResultWriter:
                outputs.append(self.results.create(self.result_name(record, candidate)))
                return outputs[-1]

            try:
                result = self.pipeline.run(spec, live.token, emit, blocks, keep, output)
                if result.osz is not None:
                    outputs.append(self.results.create(self.charts_name(record)))
                    outputs[-1].write_at(0, result.osz)
                for written in outputs:
                    written.commit()
            except BaseException:
                for written in outputs:
                    written.abort()
                raise
            done = song_pb2.SongEvent(done=result.summary)

            def record_success() -> None:
                self.store.finish(
                    lease,
                    song_pb2.JOB_STATE_SUCCEEDED,
                    result=result.summary,
                    last_event=done,
                    last_seq=len(live.events) + 1,
                )

            def recorded() -> None:
                live.emit(done)
                live.meter.finished(result.summary)
                job_finished(song_pb2.JOB_STATE_SUCCEEDED)

            if not self._record_outcome(live, record_success, recorded, patient=True):
                return None, True
            log.info("job finished: %.1f s of audio", result.summary.duration.ToNanoseconds() / 1e9)
            return None, False
        except (LeaseLostError, StoreUnavailableError) as exc:
            log.warning("job interrupted: %s; it resumes when its lease expires", exc)
            return None, True
        except ServiceError as exc:
            return exc, False
        except Exception as exc:
            log.exception("job failed")
            return errors.InternalError(f"internal error: {type(exc).__name__}: {exc}"), False

    def _publish(self, live: _LiveJob, event: song_pb2.SongEvent) -> None:
        """Send an event to this gateway's watchers and keep it for the others', in order."""
        with live.publishing:
            live.emit(event)
            self.store.append_event(live.lease, len(live.events), event)

    def _release(self, lease: Lease) -> None:
        try:
            self.store.release(lease)
        except (LeaseLostError, StoreUnavailableError) as exc:
            log.warning("could not hand job %s back to the queue (%s); its lease expires", lease.job_id, exc)

    def _record_outcome(
        self, live: _LiveJob, write: Callable[[], None], recorded: Callable[[], None], patient: bool
    ) -> bool:
        """Run `write`, the store call that ends the job, unless an outcome is recorded already, then
        `recorded()` under the same lock. With `patient`, a store that does not take the write is
        asked again with bounded backoff until it does, the lease is lost or the gateway stops (the
        lock is let go in between, so a cancel can still win). True when this write recorded it."""
        backoff = OUTCOME_RETRY_FIRST_S
        while True:
            with live.publishing:
                if live.outcome_recorded:
                    return False
                try:
                    write()
                except LeaseLostError as exc:
                    log.warning("could not record the job's outcome (%s); another gateway runs it", exc)
                    return False
                except StoreUnavailableError as exc:
                    if not patient or self._stopping.is_set():
                        log.warning(
                            "could not record the job's outcome (%s); it resumes after its lease expires", exc
                        )
                        return False
                    failure = exc
                else:
                    live.outcome_recorded = True
                    recorded()
                    return True
            log.warning("could not record the job's outcome (%s); trying again in %.1f s", failure, backoff)
            self._stopping.wait(backoff)
            backoff = min(backoff * 2, OUTCOME_RETRY_MAX_S)

    def _end(self, live: _LiveJob, error: ServiceError, patient: bool = False) -> bool:
        """Record a failed or cancelled outcome (once; with `patient`, until the store takes it) and
        end the job for this gateway's watchers; False when no outcome could be recorded (the job
        then resumes when its lease expires)."""
        state = (
            song_pb2.JOB_STATE_CANCELLED
            if isinstance(error, errors.CancelledError)
            else song_pb2.JOB_STATE_FAILED
        )

        def write() -> None:
            self.store.finish(live.lease, state, error=error_text(error.code, error.message))

        if not self._record_outcome(live, write, lambda: None, patient):
            return live.outcome_recorded
        job_finished(state)
        live.finish(error)
        log.info("job ended: %s", error_text(error.code, error.message))
        return True

    def _stop(self, live: _LiveJob, reason: str) -> None:
        """Cancel a job running here: its outcome is recorded and its watchers told at once; the
        song's computation stops at its next step (and could not publish anything after this)."""
        if not live.finished:
            self._end(live, errors.CancelledError(reason))
        live.token.cancel(reason)

    # Reading, watching, cancelling and deleting jobs.

    def _visible(self, job_id: str, caller: Caller) -> JobRecord:
        """The job, if `caller` may see it: NOT_FOUND for an unknown id and for another's job."""
        record = self.store.get(job_id)
        if record is None or not (caller.admin or record.owner == caller.identity):
            raise errors.NotFoundError(f"no job {job_id}")
        return record

    def get(self, job_id: str, caller: Caller = ANONYMOUS) -> song_pb2.Job:
        """The job's current record; NOT_FOUND for an unknown id."""
        return self._visible(job_id, caller).to_proto()

    def list(
        self, page_size: int, state: int, caller: Caller = ANONYMOUS, page_token: str = ""
    ) -> tuple[list[song_pb2.Job], str]:
        """One page of the caller's jobs (every job for an admin), newest first, and the token of
        the next page ("" after the last)."""
        owner = None if caller.admin else caller.identity
        size = page_size or DEFAULT_PAGE_SIZE
        offset = _page_offset(page_token)
        records = self.store.list(size + 1, state, owner, offset)
        following = str(offset + size) if len(records) > size else ""
        return [record.to_proto() for record in records[:size]], following

    def watch(
        self, job_id: str, watcher: CancellationToken, caller: Caller = ANONYMOUS
    ) -> Iterator[song_pb2.SongEvent]:
        """The job's events from `accepted` on: followed live when this gateway runs the job,
        relayed from the store when another one does (or it waits), replayed when it is over."""
        record = self._visible(job_id, caller)
        delivery = _Delivery()
        accepted = _accepted(record)
        delivery.admit(accepted)
        yield accepted
        with self._lock:
            live = self._live.get(job_id)
        if live is not None:
            delivery.new_run()
            if (yield from live.follow(watcher, delivery)):
                return
        if record.finished:
            yield from self._replay(record, delivery)
            return
        yield from self._relay(job_id, watcher, delivery)

    def _relay(
        self, job_id: str, watcher: CancellationToken, delivery: _Delivery
    ) -> Iterator[song_pb2.SongEvent]:
        """Events kept in the store by whichever gateway runs the job, until it ends."""
        changed = threading.Event()
        with self._lock:
            self._relays[job_id].add(changed)
        attempt, seq = 0, 0
        try:
            while True:
                changed.clear()
                watcher.check()
                batch = self.store.events(job_id, attempt, seq)
                record = None
                if not batch:
                    record = self.store.get(job_id)
                    if record is None:
                        raise errors.NotFoundError(f"no job {job_id}")
                    if record.finished:
                        batch = self.store.events(job_id, attempt, seq)
                for stored in batch:
                    if stored.attempt != attempt:
                        delivery.new_run()
                        attempt = stored.attempt
                    seq = stored.seq
                    if delivery.admit(stored.event):
                        yield stored.event
                    if stored.event.HasField("done"):
                        return
                if record is None:
                    continue
                if record.finished:
                    yield from self._replay(record, delivery)
                    return
                if self._stopping.is_set():
                    raise errors.CancelledError(SHUTTING_DOWN)
                changed.wait(self.settings.poll_s)
        finally:
            with self._lock:
                self._relays[job_id].discard(changed)
                if not self._relays[job_id]:
                    del self._relays[job_id]

    def _replay(self, record: JobRecord, delivery: _Delivery) -> Iterator[song_pb2.SongEvent]:
        """A finished job from its stored result (the events not yet delivered), or its error."""
        if record.state != song_pb2.JOB_STATE_SUCCEEDED or record.result is None:
            raise error_from_text(
                record.error or error_text(grpc.StatusCode.UNAVAILABLE, "the job has not finished")
            )
        delivery.new_run()
        kind = audio_format(record.request)

        def audio(candidate: int, name: str) -> Iterator[song_pb2.SongEvent]:
            for start, data in self.results.read_chunks(name, MAX_CHUNK_BYTES):
                chunk = song_pb2.AudioChunk(offset=start, data=data, format=kind, candidate=candidate)
                yield song_pb2.SongEvent(audio=chunk)

        def osz() -> Iterator[song_pb2.SongEvent]:
            if record.result.HasField("charts"):
                for start, data in self.results.read_chunks(self.charts_name(record), MAX_CHUNK_BYTES):
                    yield song_pb2.SongEvent(osz=song_pb2.OszChunk(offset=start, data=data))

        files = [audio(candidate, name) for candidate, name in enumerate(self.result_names(record))]
        done = [song_pb2.SongEvent(done=record.result)]
        for event in itertools.chain([_accepted(record)], *files, osz(), done):
            if delivery.admit(event):
                yield event

    def cancel(
        self,
        job_id: str,
        caller: Caller = ANONYMOUS,
        reason: str = "cancelled by CancelJob",
        wait_s: float = 60.0,
    ) -> song_pb2.Job:
        """Stop a queued or running job, wherever it runs, and wait (up to `wait_s`) until it has
        stopped; a finished job is returned unchanged."""
        self._visible(job_id, caller)
        changed = threading.Event()
        with self._lock:
            self._relays[job_id].add(changed)
        try:
            self._cancel(job_id, reason)
            deadline = time.monotonic() + wait_s
            while True:
                changed.clear()
                record = self._visible(job_id, caller)
                if record.finished or time.monotonic() > deadline:
                    return record.to_proto()
                changed.wait(self.settings.poll_s)
        finally:
            with self._lock:
                self._relays[job_id].discard(changed)
                if not self._relays[job_id]:
                    del self._relays[job_id]

    def _cancel(self, job_id: str, reason: str) -> None:
        """Record the cancellation (so any runner, now or after a takeover, stops) and stop the
        job at once when it runs here."""
        self.store.request_cancel(job_id, reason)
        with self._lock:
            live = self._live.get(job_id)
        if live is not None:
            self._stop(live, reason)

    def delete(self, job_id: str, caller: Caller = ANONYMOUS) -> None:
        """Remove a finished job and its result; NOT_FOUND for an unknown or another's job,
        FAILED_PRECONDITION for one that has not finished (cancel it first)."""
        record = self._visible(job_id, caller)
        if not record.finished:
            state = song_pb2.JobState.Name(record.state)
            raise errors.FailedPreconditionError(f"job {job_id} is {state}: cancel it before deleting it")
        if not self.store.delete(job_id):
            raise errors.NotFoundError(f"no job {job_id}")
        if record.result is not None:
            for name in self.result_names(record):
                self.results.delete(name)
            self.results.delete(self.charts_name(record))

    def shutdown(self, wait_s: float = 30.0) -> None:
        """Stop taking jobs; running ones stop at their next step and go back to the queue, where
        another gateway (or this one after a restart) resumes them after their kept blocks."""
        with self._lock:
            self._stopping.set()
        self._work.set()
        self._beat.set()
        with self._lock:
            live = list(self._live.values())
        for job in live:
            job.token.cancel(SHUTTING_DOWN)
        self._workers.shutdown(wait=False)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._live:
                    break
            time.sleep(0.02)
        for thread in self._threads:
            thread.join(timeout=5)

    def close(self) -> None:
        """Shut down, then close the store."""
        self.shutdown()
        forget_gateway(self)
        self.store.close()
