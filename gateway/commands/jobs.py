"""`songsmith jobs list|get|watch|cancel`: a gateway's jobs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gateway.commands.common import add_connection_options, connect
from songsmith.v1 import song_pb2


def job_line(job: song_pb2.Job) -> str:
    """One line about a job: id, state, blocks and its error or length."""
    state = song_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_").lower()
    length = f"{job.result.duration.ToNanoseconds() / 1e9:.1f} s" if job.HasField("result") else ""
    return f"{job.job_id}  {state:<9} {job.blocks_done}/{job.max_blocks} blocks  {job.error or length}"


def job_json(job: song_pb2.Job) -> dict[str, Any]:
    """A job as JSON, with the proto's field names."""
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(job, preserving_proto_field_name=True)


def run_jobs(args: argparse.Namespace) -> int:
    """List, show, watch or cancel jobs on a gateway."""
    import grpc

    from gateway.client import consume
    from gateway.commands.songs import ProgressBar
    from services.runtime.interceptor import error_from_call

    client = connect(args)
    stub, metadata = client.stub, client.metadata
    try:
        if args.jobs_command == "list":
            request = song_pb2.ListJobsRequest(page_size=args.limit)
            for job in stub.ListJobs(request, metadata=metadata, timeout=30).jobs:
                print(job_line(job))
        elif args.jobs_command == "get":
            reply = stub.GetJob(song_pb2.GetJobRequest(job_id=args.job_id), metadata=metadata, timeout=30)
            print(json.dumps(job_json(reply.job), indent=2))
        elif args.jobs_command == "cancel":
            request = song_pb2.CancelJobRequest(job_id=args.job_id)
            print(job_line(stub.CancelJob(request, metadata=metadata, timeout=60).job))
        else:
            progress = ProgressBar(args.job_id, args.quiet)
            try:
                output = Path(args.output) if args.output else None
                osz = output.with_suffix(".osz") if output is not None else None
                summary = consume(client.watch(args.job_id), output, progress, osz)
            finally:
                progress.close()
            if summary is not None:
                print(f"{args.job_id}: done, {summary.duration.ToNanoseconds() / 1e9:.1f} s")
    except grpc.RpcError as exc:
        raise error_from_call(exc, "gateway") from exc
    finally:
        client.close()
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add the `jobs` group."""
    jobs = commands.add_parser("jobs", help="list, show, watch or cancel jobs on a gateway")
    jobs_commands = jobs.add_subparsers(dest="jobs_command", required=True)
    for name, text in (
        ("list", "jobs, newest first"),
        ("get", "one job"),
        ("watch", "follow a job"),
        ("cancel", "cancel a job"),
    ):
        command = jobs_commands.add_parser(name, help=text)
        if name != "list":
            command.add_argument("job_id")
        add_connection_options(command, "127.0.0.1:50050")
        if name == "list":
            command.add_argument("--limit", type=int, default=50)
        if name == "watch":
            command.add_argument(
                "-o", "--output", help="write the song's audio here (and its charts, if any, as <output>.osz)"
            )
            command.add_argument("-q", "--quiet", action="store_true")
        command.set_defaults(func=run_jobs)
