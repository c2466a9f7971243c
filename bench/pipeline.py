"""The same song through the gRPC stack (gateway + four stage processes) and in-process.

Both run the demo model (random weights, the published layouts) at a bench configuration where a
song takes seconds. Reported per path: median wall time of the whole song and the time to the first
audio chunk, and the gRPC / in-process ratio (target: at most 1.10). Runs alternate between the two
paths so that machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from gateway.client import SongClient
from gateway.commands.demo import EXAMPLE_LYRICS
from gateway.launcher import LocalStack, plan
from gateway.model_store import write_demo
from gateway.models import discover
from gateway.pipeline import Pipeline
from gateway.router import Router
from gateway.validation import song_spec
from services.runtime.cancellation import CancellationToken
from songsmith.v1 import song_pb2
from tests.helpers import free_port_block

LYRICS = EXAMPLE_LYRICS.read_text(encoding="utf-8")


def _timed(events: Iterable[song_pb2.SongEvent]) -> tuple[float, float]:
    started = time.perf_counter()
    first_audio = None
    for event in events:
        if event.HasField("audio") and first_audio is None:
            first_audio = time.perf_counter() - started
    return time.perf_counter() - started, first_audio or float("nan")


def _in_process(pipeline: Pipeline, request: song_pb2.SongRequest) -> tuple[float, float]:
    started = time.perf_counter()
    first: list[float] = []

    def emit(event: song_pb2.SongEvent) -> None:
        if event.HasField("audio") and not first:
            first.append(time.perf_counter() - started)

    pipeline.run(song_spec(request, request.job_id, request.seed), CancellationToken(), emit)
    return time.perf_counter() - started, first[0]


def main() -> int:
    """Start the stack, time both paths, print the table; exit 1 if the ratio target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="song length (default 20 s = 10 blocks)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        write_demo(root / "models")
        routes = discover(root / "models")
        stack = LocalStack(plan(routes, free_port_block(5), 0), root / "var")
        stack.start()
        try:
            if problems := stack.wait_healthy(300):
                raise SystemExit(f"stack did not start: {problems}")
            client = SongClient(stack.plan.gateway.address)
            pipeline = Pipeline(Router(routes))

            def request(index: int) -> song_pb2.SongRequest:
                song = song_pb2.SongRequest(
                    job_id=f"bench-{index}",
                    lyrics=LYRICS,
                    style_prompt="indie folk",
                    seed=5,
                    steps=args.steps,
                    format=song_pb2.AUDIO_FORMAT_MP3,
                )
                song.max_duration.FromNanoseconds(round(args.seconds * 1e9))
                return song

            runs: dict[str, list[tuple[float, float]]] = {"grpc": [], "in-process": []}
            paths_to_run: dict[str, Callable[[int], tuple[float, float]]] = {
                "grpc": lambda i: _timed(client.generate(request(i), timeout=600)),
                "in-process": lambda i: _in_process(pipeline, request(i)),
            }
            for name, run in paths_to_run.items():
                run(1000 + len(name))  # warm-up
            for index in range(args.repeats):
                for name, run in paths_to_run.items():
                    runs[name].append(run(index * 2 + len(name)))
            client.close()
        finally:
            stack.stop()
    total = {name: statistics.median(r[0] for r in values) for name, values in runs.items()}
    first = {name: statistics.median(r[1] for r in values) for name, values in runs.items()}
    ratio = total["grpc"] / total["in-process"]
    print(f"song {args.seconds:g} s, {args.steps} steps, demo model, median of {args.repeats}")
    print("| path | song wall s | first audio s | first audio / total |")
    print("|---|---:|---:|---:|")
    for name in runs:
        print(f"| {name} | {total[name]:.2f} | {first[name]:.2f} | {first[name] / total[name]:.2f} |")
    print(f"\ngRPC / in-process: {ratio:.3f} (target <= 1.10: {'met' if ratio <= 1.10 else 'MISSED'})")
    return 0 if ratio <= 1.10 else 1


if __name__ == "__main__":
    sys.exit(main())
