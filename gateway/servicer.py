"""The public SongService over the job manager: transport only, no song logic here."""

from __future__ import annotations

import grpc

from gateway.auth import Caller, Identify, anonymous
from gateway.jobs import JobManager
from services.runtime.calls import call_token
from services.runtime.errors import InvalidArgumentError
from services.runtime.server import ModelSlot
from songsmith.v1 import song_pb2, song_pb2_grpc


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

    def Generate(self, request: song_pb2.SongRequest, context: grpc.ServicerContext):  # noqa: N802
        """Run (or re-attach to) a song and stream its events; the caller going away cancels a song
        this call started."""
        jobs, caller = self._jobs(), self._caller(context)
        token = call_token(context)
        job, created = jobs.submit(request, caller, deadline=token.deadline)
        if created:
            token.on_cancel(
                lambda: jobs.request_cancel(job.job_id, "the Generate call was cancelled or ended")
            )
        yield from jobs.watch(job.job_id, token, caller)

    def SubmitJob(self, request: song_pb2.SongRequest, context: grpc.ServicerContext) -> song_pb2.Job:  # noqa: N802
        """Start a song in the background (idempotent by job id)."""
        return self._jobs().submit(request, self._caller(context))[0]

    def GetJob(self, request: song_pb2.GetJobRequest, context: grpc.ServicerContext) -> song_pb2.Job:  # noqa: N802
        """The job's current state."""
        return self._jobs().get(request.job_id, self._caller(context))

    def WatchJob(self, request: song_pb2.WatchJobRequest, context: grpc.ServicerContext):  # noqa: N802
        """Replay then follow a job's events."""
        yield from self._jobs().watch(request.job_id, call_token(context), self._caller(context))

    def CancelJob(self, request: song_pb2.CancelJobRequest, context: grpc.ServicerContext) -> song_pb2.Job:  # noqa: N802
        """Cancel a job."""
        return self._jobs().cancel(request.job_id, self._caller(context))

    def ListJobs(  # noqa: N802
        self, request: song_pb2.ListJobsRequest, context: grpc.ServicerContext
    ) -> song_pb2.ListJobsResponse:
        """Jobs, newest first."""
        if request.limit > 1000:
            raise InvalidArgumentError("limit", f"{request.limit} is over 1000")
        jobs = self._jobs().list(request.limit, request.state, self._caller(context))
        return song_pb2.ListJobsResponse(jobs=jobs)

    def DeleteJob(  # noqa: N802
        self, request: song_pb2.DeleteJobRequest, context: grpc.ServicerContext
    ) -> song_pb2.DeleteJobResponse:
        """Remove a finished job and its song."""
        self._jobs().delete(request.job_id, self._caller(context))
        return song_pb2.DeleteJobResponse()
