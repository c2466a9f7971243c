"""The public SongService over the job manager and the router: transport only, no song logic here."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from gateway.auth import Caller, Identify, anonymous
from gateway.jobs import JobManager
from services.runtime.calls import call_token
from services.runtime.errors import InvalidArgumentError
from services.runtime.slot import ModelSlot
from songsmith.v1 import song_pb2, song_pb2_grpc

MAX_PAGE_SIZE = 1000
# The longest CancelJob waits for the job to stop before answering with its state.
CANCEL_WAIT_S = 60.0


class SongServicer(song_pb2_grpc.SongServiceServicer):
    """Maps SongService calls onto the job manager held in the slot."""

    def __init__(self, slot: ModelSlot, identify: Identify = anonymous) -> None:
        """The job manager is read from `slot` per call (UNAVAILABLE until the gateway is ready);
        `identify` names each call's caller, who sees only its own jobs unless it is an admin."""
        self._slot = slot
        self._identify = identify

    def _jobs(self) -> JobManager:
        return self._slot.get()

    def _caller(self, context: grpc.ServicerContext) -> Caller:
        return self._identify(context)

    def Generate(  # noqa: N802
        self, request: song_pb2.GenerateRequest, context: grpc.ServicerContext
    ) -> Iterator[song_pb2.GenerateResponse]:
        """Run a song, or attach to the running or finished job of its id, and stream its events
        from the start. The song goes on when the stream drops (until CancelJob or its deadline):
        a Generate with the same id picks it up again."""
        jobs, caller = self._jobs(), self._caller(context)
        token = call_token(context)
        job, _ = jobs.submit(request.song, caller, deadline=token.deadline)
        for event in jobs.watch(job.job_id, token, caller):
            yield song_pb2.GenerateResponse(event=event)

    def SubmitJob(  # noqa: N802
        self, request: song_pb2.SubmitJobRequest, context: grpc.ServicerContext
    ) -> song_pb2.SubmitJobResponse:
        """Start a song in the background (idempotent by job id)."""
        return song_pb2.SubmitJobResponse(job=self._jobs().submit(request.song, self._caller(context))[0])

    def GetJob(  # noqa: N802
        self, request: song_pb2.GetJobRequest, context: grpc.ServicerContext
    ) -> song_pb2.GetJobResponse:
        """The job's current state."""
        return song_pb2.GetJobResponse(job=self._jobs().get(request.job_id, self._caller(context)))

    def WatchJob(  # noqa: N802
        self, request: song_pb2.WatchJobRequest, context: grpc.ServicerContext
    ) -> Iterator[song_pb2.WatchJobResponse]:
        """Replay then follow a job's events."""
        for event in self._jobs().watch(request.job_id, call_token(context), self._caller(context)):
            yield song_pb2.WatchJobResponse(event=event)

    def CancelJob(  # noqa: N802
        self, request: song_pb2.CancelJobRequest, context: grpc.ServicerContext
    ) -> song_pb2.CancelJobResponse:
        """Cancel a job; answers once it has stopped, or with its state when the call's deadline nears."""
        remaining = context.time_remaining()
        wait_s = CANCEL_WAIT_S if remaining is None else max(0.0, min(CANCEL_WAIT_S, remaining - 1.0))
        job = self._jobs().cancel(request.job_id, self._caller(context), wait_s=wait_s)
        return song_pb2.CancelJobResponse(job=job)

    def ListJobs(  # noqa: N802
        self, request: song_pb2.ListJobsRequest, context: grpc.ServicerContext
    ) -> song_pb2.ListJobsResponse:
        """A page of the caller's jobs, newest first."""
        if request.page_size > MAX_PAGE_SIZE:
            raise InvalidArgumentError("page_size", f"{request.page_size} is over {MAX_PAGE_SIZE}")
        jobs, next_token = self._jobs().list(
            request.page_size, request.state, self._caller(context), request.page_token
        )
        return song_pb2.ListJobsResponse(jobs=jobs, next_page_token=next_token)

    def DeleteJob(  # noqa: N802
        self, request: song_pb2.DeleteJobRequest, context: grpc.ServicerContext
    ) -> song_pb2.DeleteJobResponse:
        """Remove a finished job and its song."""
        self._jobs().delete(request.job_id, self._caller(context))
        return song_pb2.DeleteJobResponse()

    def ListModels(  # noqa: N802
        self, request: song_pb2.ListModelsRequest, context: grpc.ServicerContext
    ) -> song_pb2.ListModelsResponse:
        """The routed models, the default first, with what each stage reports."""
        return self._jobs().pipeline.router.list_models()
