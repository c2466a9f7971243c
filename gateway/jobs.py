"""Song jobs: idempotent submission by client-chosen id, a bounded worker pool, live and replayed
events, cancellation, results kept on disk, and resumption of unfinished jobs after a restart."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc

from gateway.audio import CONTAINERS
from gateway.job_store import JobRecord, JobStore, fingerprint
from gateway.pipeline import RESUME_RESTARTED, Pipeline
from gateway.song_metrics import SongMeter, job_finished, prepare_gateway
from gateway.validation import (
    RequestLimits,
    audio_format,
    draw_seed,
    song_spec,
    validate_song,
)
from services.runtime import errors
from services.runtime.cancellation import CancellationToken
from services.runtime.codec import MAX_CHUNK_BYTES
from services.runtime.errors import ServiceError
from services.runtime.logs import job_scope
from songsmith.v1 import song_pb2

log = logging.getLogger(__name__)

# How long a submission waits for a model's generation stage to say what it hosts.
MODEL_INFO_TIMEOUT_S = 5.0
DEFAULT_PAGE_SIZE = 50


@dataclass(frozen=True)
class JobSettings:
    """How many songs run at once, how many may wait, and how long one may take."""

    max_running: int = 1
    max_queued: int = 64
    job_timeout_s: float = 3600.0


class _LiveJob:
    """A job of this process: its cancellation token, every event so far (for watchers) and the
    meter timing its song."""

    def __init__(self, job_id: str, token: CancellationToken, meter: SongMeter) -> None:
        self.job_id = job_id
        self.token = token
        self.meter = meter
        self.events: list[song_pb2.SongEvent] = []
        self.error: ServiceError | None = None
        self.finished = False
        self._claimed = False
        self._changed = threading.Condition()

    @property
    def claimed(self) -> bool:
        """True once a worker took the job (or it was dropped unstarted)."""
        return self._claimed

    def claim(self) -> bool:
        """Take the job, to run it or to drop it unstarted; only the first claim wins."""
        with self._changed:
            claimed, self._claimed = self._claimed, True
            return not claimed

    def emit(self, event: song_pb2.SongEvent) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def finish(self, error: ServiceError | None) -> None:
        with self._changed:
            self.error = error
            self.finished = True
            self._changed.notify_all()

    def follow(self, watcher: CancellationToken) -> Iterator[song_pb2.SongEvent]:
        """Every event from the first, then live ones, until the job ends (raising its error)."""
        sent = 0
        while True:
            with self._changed:
                while sent == len(self.events) and not self.finished:
                    self._changed.wait(0.1)
                    watcher.check()
                pending, done = self.events[sent:], self.finished
            sent += len(pending)
            yield from pending
            if done and sent == len(self.events):
                if self.error is not None:
                    raise self.error
                return


def _page_offset(token: str) -> int:
    """The position a ListJobs page token stands for; INVALID_ARGUMENT for one this gateway never gave."""
    if not token:
        return 0
    if not token.isdigit():
        raise errors.InvalidArgumentError("page_token", "not a token from a previous ListJobs page")
    return int(token)


def _error_text(error: ServiceError) -> str:
    return f"{error.code.name}: {error.message}"


def _error_from_text(text: str) -> ServiceError:
    code_name, _, message = text.partition(": ")
    code = grpc.StatusCode.__members__.get(code_name, grpc.StatusCode.INTERNAL)
    return errors.error_for_code(code, message)


class JobManager:
    """Runs song jobs over a pipeline and keeps their records and results."""

    def __init__(
        self,
        store: JobStore,
        pipeline: Pipeline,
        results_dir: str | Path,
        settings: JobSettings | None = None,
        limits: RequestLimits | None = None,
    ) -> None:
        """Jobs are recorded in `store` and their audio written under `results_dir`."""
        self.store = store
        self.pipeline = pipeline
        self.results_dir = Path(results_dir)
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self.settings = settings or JobSettings()
        self.limits = limits or RequestLimits()
        self._live: dict[str, _LiveJob] = {}
        self._lock = threading.Lock()
        self._queued = 0
        self._stopping = False
        self._workers = ThreadPoolExecutor(self.settings.max_running, thread_name_prefix="job")
        prepare_gateway([model.name for model in pipeline.router.models], self)

    def live_states(self) -> dict[str, int]:
        """How many of this gateway's jobs are queued and running now (`songsmith_jobs`)."""
        with self._lock:
            live = list(self._live.values())
        running = sum(1 for job in live if job.claimed and not job.finished)
        return {"queued": sum(1 for job in live if not job.claimed), "running": running}

    def result_path(self, record: JobRecord) -> Path:
        """Where a job's audio file is kept."""
        return self.results_dir / f"{record.job_id}.{CONTAINERS[audio_format(record.request)].extension}"

    def submit(
        self, request: song_pb2.SongRequest, deadline: float | None = None
    ) -> tuple[song_pb2.Job, bool]:
        """Start a job for `request` unless its id exists; return the job and whether it is new.

        Raises INVALID_ARGUMENT for a bad request or inputs the model cannot use, NOT_FOUND for a
        model the gateway does not route to, ALREADY_EXISTS when the id belongs to a different
        request, RESOURCE_EXHAUSTED when the queue is full.
        """
        router = self.pipeline.router
        timeout = CancellationToken.with_timeout(MODEL_INFO_TIMEOUT_S)
        validate_song(request, self.limits, lambda: router.get(request.model).info(timeout))
        model = router.get(request.model)
        job_id = request.job_id or uuid.uuid4().hex
        digest = fingerprint(request)
        now = time.time()
        with self._lock:
            existing = self.store.get(job_id)
            if existing is not None:
                if existing.fingerprint != digest:
                    raise errors.AlreadyExistsError(f"job {job_id} exists with a different request")
                return existing.to_proto(), False
            if self._queued >= self.settings.max_queued:
                raise errors.ResourceExhaustedError(
                    f"{self._queued} songs are waiting; the gateway's queue is full", retry_after_s=30.0
                )
            seed = request.seed if request.HasField("seed") else draw_seed()
            stored = song_pb2.SongRequest()
            stored.CopyFrom(request)
            stored.job_id = job_id
            stored.model = model.name
            record = self.store.insert_if_absent(
                JobRecord(job_id, digest, stored, seed, song_pb2.JOB_STATE_QUEUED, now, now)
            )
            self._start(record, deadline)
        return record.to_proto(), True

    def _start(self, record: JobRecord, deadline: float | None) -> None:
        limit = time.monotonic() + self.settings.job_timeout_s
        token = CancellationToken(limit if deadline is None else min(deadline, limit))
        live = _LiveJob(record.job_id, token, SongMeter(record.request.model))
        accepted = song_pb2.Accepted(job_id=record.job_id, seed=record.seed, model=record.request.model)
        live.emit(song_pb2.SongEvent(accepted=accepted))
        self._live[record.job_id] = live
        self._queued += 1
        self._workers.submit(self._run, record, live)

    def _run(self, record: JobRecord, live: _LiveJob) -> None:
        with self._lock:
            self._queued -= 1
        if not live.claim():
            return
        with job_scope(record.job_id):
            error: ServiceError | None = None
            try:
                live.token.check()
                self.store.update(record.job_id, state=song_pb2.JOB_STATE_RUNNING)
                spec = song_spec(record.request, record.job_id, record.seed)

                def emit(event: song_pb2.SongEvent) -> None:
                    live.meter.saw(event)
                    live.emit(event)
                    if event.HasField("notice") and event.notice.code == RESUME_RESTARTED:
                        self.store.drop_blocks(record.job_id)
                    if event.HasField("progress") and event.progress.max_blocks:
                        progress = event.progress
                        self.store.update(
                            record.job_id,
                            blocks_done=progress.blocks_done,
                            max_blocks=progress.max_blocks,
                            seconds_generated=progress.generated.ToNanoseconds() / 1e9,
                        )

                kept = self.store.blocks(record.job_id)
                if kept:
                    log.info("resuming after block %d of a previous run", len(kept) - 1)
                result = self.pipeline.run(
                    spec, live.token, emit, kept, lambda block: self.store.add_block(record.job_id, block)
                )
                path = self.result_path(record)
                partial = path.with_suffix(path.suffix + ".partial")
                partial.write_bytes(result.data)
                partial.replace(path)
                self.store.update(record.job_id, state=song_pb2.JOB_STATE_SUCCEEDED, result=result.summary)
                live.meter.finished(result.summary)
                job_finished(song_pb2.JOB_STATE_SUCCEEDED)
                live.emit(song_pb2.SongEvent(done=result.summary))
                log.info("job finished: %.1f s of audio", result.summary.duration.ToNanoseconds() / 1e9)
            except ServiceError as exc:
                error = exc
            except Exception as exc:
                log.exception("job failed")
                error = errors.InternalError(f"internal error: {type(exc).__name__}: {exc}")
            if error is not None and self._stopping:
                log.info("job interrupted by shutdown; the next gateway resumes it after its kept blocks")
            else:
                self.store.drop_blocks(record.job_id)
                if error is not None:
                    state = (
                        song_pb2.JOB_STATE_CANCELLED
                        if isinstance(error, errors.CancelledError)
                        else song_pb2.JOB_STATE_FAILED
                    )
                    self.store.update(record.job_id, state=state, error=_error_text(error))
                    job_finished(state)
                    log.info("job ended: %s", _error_text(error))
            live.finish(error)
            with self._lock:
                self._live.pop(record.job_id, None)

    def get(self, job_id: str) -> song_pb2.Job:
        """The job's current record; NOT_FOUND for an unknown id."""
        return self._record(job_id).to_proto()

    def _record(self, job_id: str) -> JobRecord:
        record = self.store.get(job_id)
        if record is None:
            raise errors.NotFoundError(f"no job {job_id}")
        return record

    def list(self, page_size: int, state: int, page_token: str = "") -> tuple[list[song_pb2.Job], str]:
        """One page of jobs, newest first, and the token of the next page ("" after the last)."""
        size = page_size or DEFAULT_PAGE_SIZE
        offset = _page_offset(page_token)
        records = self.store.list(size + 1, state, offset)
        following = str(offset + size) if len(records) > size else ""
        return [record.to_proto() for record in records[:size]], following

    def cancel(self, job_id: str, reason: str = "cancelled by CancelJob") -> song_pb2.Job:
        """Stop a queued or running job and wait until it has stopped; a finished job is returned
        unchanged."""
        live = self.request_cancel(job_id, reason)
        while live is not None and not live.finished:
            time.sleep(0.02)
        return self.get(job_id)

    def request_cancel(self, job_id: str, reason: str) -> _LiveJob | None:
        """Ask a job to stop at its next step, without waiting (safe from gRPC callbacks)."""
        self._record(job_id)
        with self._lock:
            live = self._live.get(job_id)
        if live is not None:
            live.token.cancel(reason)
            if live.claim():
                error = errors.CancelledError(reason)
                self.store.update(job_id, state=song_pb2.JOB_STATE_CANCELLED, error=_error_text(error))
                job_finished(song_pb2.JOB_STATE_CANCELLED)
                live.finish(error)
                with self._lock:
                    self._live.pop(job_id, None)
        return live

    def watch(self, job_id: str, watcher: CancellationToken) -> Iterator[song_pb2.SongEvent]:
        """The job's events: live ones for a job running here, else the stored outcome replayed."""
        record = self._record(job_id)
        with self._lock:
            live = self._live.get(job_id)
        if live is not None:
            yield from live.follow(watcher)
            return
        yield from self._replay(record)

    def _replay(self, record: JobRecord) -> Iterator[song_pb2.SongEvent]:
        accepted = song_pb2.Accepted(job_id=record.job_id, seed=record.seed, model=record.request.model)
        yield song_pb2.SongEvent(accepted=accepted)
        if record.state != song_pb2.JOB_STATE_SUCCEEDED or record.result is None:
            raise _error_from_text(record.error or "UNAVAILABLE: the job has not finished")
        data = self.result_path(record).read_bytes()
        for start in range(0, len(data), MAX_CHUNK_BYTES):
            chunk = song_pb2.AudioChunk(
                offset=start, data=data[start : start + MAX_CHUNK_BYTES], format=audio_format(record.request)
            )
            yield song_pb2.SongEvent(audio=chunk)
        yield song_pb2.SongEvent(done=record.result)

    def resume_unfinished(self) -> int:
        """Queue again every job a previous gateway left unfinished. Each resumes after the blocks
        it had finished (kept in the store, and counted in its `blocks_done`); the same seed gives
        the same song."""
        records = self.store.unfinished()
        with self._lock:
            for record in records:
                log.info("resuming job %s left unfinished by a restart", record.job_id)
                self.store.update(record.job_id, state=song_pb2.JOB_STATE_QUEUED)
                self._start(record, None)
        return len(records)

    def shutdown(self) -> None:
        """Stop taking jobs; running ones are interrupted and resumed by the next gateway."""
        self._stopping = True
        self._workers.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            live = list(self._live.values())
        for job in live:
            job.token.cancel("the gateway is shutting down")
