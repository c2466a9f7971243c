"""Throughput of continuous batching: N songs submitted at once through the gRPC stack (gateway and
four stage processes on 127.0.0.1), against the same N songs run one after another in the same run.

The models are random-weight, in the published layouts, sized so that one 2 s block takes tens of
milliseconds of DiT time on a development CPU (`BENCH_DIT`: dim 128, depth 2; about 60 ms of CPU per
block at 16 steps), with a decoder that still makes 48 kHz audio (9600 samples per frame) but in
four upsampling stages from 16 channels with one small residual branch each (`BENCH_DECODER`, about
25 ms of CPU per block), so that, as at full size, sampling and not decoding is most of the work.
Songs use the example lyrics (210 tokens), 16 steps, guidance 2.0 and a fixed length (random
weights never sing the end marker), each with its own seed, as WAV.

For every N (1, 2, 4, 8, 16 by default) the bench runs the N songs concurrently (one client thread
per song, all submitted at once), then the same N songs one after another, `--rounds` times in
turn (the fastest run of each mode is kept: the machine is shared), and reports per mode:
songs per hour, time to first audio (from submission, median), and the per-block latency (time
between two consecutive diffusion progress events of a song, median and p95). The ratios compare
the concurrent run against the one-after-another run of the same N. Target on CPU: at N = 8 at least
3x the songs per hour, with a p95 block latency at most 3x the one-after-another one.

The stack gets room for every song at once: the gateway runs up to max(N) jobs, the diffusion stage
samples up to `--max-batch` songs together (the vocoder keeps its CPU default of one window at a
time). The load average of the machine is printed with each row (the development machine is
shared; only the in-run ratios are comparable across runs). A second table says where the CPU went:
CPU seconds per song of each process, and the mean batch sizes the stages' `songsmith_batch_size`
metrics saw.

    .venv/bin/python -m bench.throughput [--counts 1,2,4,8,16] [--seconds 20] [--max-batch 16] [--rounds 2]
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # the stage processes inherit it

from prometheus_client.parser import text_string_to_metric_families

from gateway.client import SongClient
from gateway.commands.demo import EXAMPLE_LYRICS, EXAMPLE_STYLE
from gateway.launcher import LocalStack, Service, plan
from gateway.model_store import write_demo
from gateway.models import discover
from services.diffusion.diffrhythm2.demo import write_demo_checkpoint
from services.diffusion.diffrhythm2.dit import DiTConfig
from services.vocoder.diffrhythm2.demo import DEMO_CONFIG, write_demo_decoder
from songsmith.v1 import song_pb2

BENCH_DIT = DiTConfig(dim=128, depth=2, heads=2, ff_mult=4, repa_depth=1, repa_dims=(64,))
BENCH_DECODER = {
    **DEMO_CONFIG,
    "upsample_rates": [10, 10, 12, 8],
    "upsample_kernel_sizes": [20, 20, 24, 16],
    "upsample_initial_channel": 16,
    "resblock_kernel_sizes": [3],
    "resblock_dilation_sizes": [[1]],
}
TARGET_N = 8
TARGET_THROUGHPUT = 3.0
TARGET_P95 = 3.0


@dataclass
class SongTiming:
    """When one song was submitted, got its first audio, finished each block and ended."""

    submitted: float
    first_audio: float = float("nan")
    blocks: list[float] = field(default_factory=list)
    done: float = float("nan")

    @property
    def block_latencies(self) -> list[float]:
        """Seconds between consecutive blocks."""
        return [later - earlier for earlier, later in itertools.pairwise(self.blocks)]


def run_song(client: SongClient, request: song_pb2.SongRequest) -> SongTiming:
    """Generate one song, noting the time of every event that matters."""
    timing = SongTiming(time.perf_counter())
    for event in client.generate(request, timeout=3600):
        now = time.perf_counter()
        if event.HasField("audio") and timing.first_audio != timing.first_audio:
            timing.first_audio = now
        elif event.HasField("progress") and event.progress.stage == "diffusion":
            timing.blocks.append(now)
        elif event.HasField("done"):
            timing.done = now
    if timing.done != timing.done:
        raise RuntimeError(f"{request.job_id} ended without its summary")
    return timing


def run_concurrently(
    client: SongClient, requests: list[song_pb2.SongRequest]
) -> tuple[list[SongTiming], float]:
    """All songs at once, one thread each; returns their timings and the wall time of the lot."""
    timings: list[SongTiming | BaseException] = [RuntimeError("not run")] * len(requests)

    def one(index: int) -> None:
        try:
            timings[index] = run_song(client, requests[index])
        except BaseException as error:  # reported below, after every thread ended
            timings[index] = error

    started = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    failures = [t for t in timings if isinstance(t, BaseException)]
    if failures:
        raise RuntimeError(f"{len(failures)} songs failed: {failures[0]!r}")
    return timings, wall


def run_one_after_another(
    client: SongClient, requests: list[song_pb2.SongRequest]
) -> tuple[list[SongTiming], float]:
    """The songs in turn; returns their timings and the total wall time."""
    started = time.perf_counter()
    timings = [run_song(client, request) for request in requests]
    return timings, time.perf_counter() - started


@dataclass(frozen=True)
class Row:
    """One mode's figures for one N: the client's view, then where the CPU went."""

    songs_per_hour: float
    first_audio_s: float
    block_median_s: float
    block_p95_s: float
    cpu_per_song: dict[str, float]
    songs_per_step: float
    windows_per_batch: float


def summarize(timings: list[SongTiming], wall: float, usage: Usage) -> Row:
    """Songs per hour over the wall time, median time to first audio, block latency median / p95,
    CPU seconds per song of each process and the mean batch sizes."""
    latencies = sorted(latency for timing in timings for latency in timing.block_latencies)
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
    return Row(
        songs_per_hour=3600 * len(timings) / wall,
        first_audio_s=statistics.median(t.first_audio - t.submitted for t in timings),
        block_median_s=statistics.median(latencies),
        block_p95_s=p95,
        cpu_per_song={name: seconds / len(timings) for name, seconds in usage.cpu.items()},
        songs_per_step=usage.mean_batch("diffusion"),
        windows_per_batch=usage.mean_batch("vocoder"),
    )


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _batch_counts(service: Service) -> tuple[float, float]:
    """(steps, songs or windows summed over the steps) from a stage's songsmith_batch_size."""
    with urllib.request.urlopen(f"http://127.0.0.1:{service.metrics_port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    count = total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "songsmith_batch_size_count":
                count += sample.value
            elif sample.name == "songsmith_batch_size_sum":
                total += sample.value
    return count, total


@dataclass
class Usage:
    """CPU seconds per process and batch counters of the batching stages, over one run."""

    cpu: dict[str, float]
    batches: dict[str, tuple[float, float]]

    @classmethod
    def snapshot(cls, stack: LocalStack) -> Usage:
        """The counters now (totals since each process started)."""
        cpu = {name: _cpu_seconds(process.pid) for name, process in stack.processes.items()}
        batching = [s for s in stack.services if s.name in ("diffusion", "vocoder")]
        return cls(cpu, {service.name: _batch_counts(service) for service in batching})

    def since(self, before: Usage) -> Usage:
        """What happened between `before` and this snapshot."""
        batches = {
            name: (count - before.batches[name][0], total - before.batches[name][1])
            for name, (count, total) in self.batches.items()
        }
        return Usage({name: self.cpu[name] - before.cpu[name] for name in self.cpu}, batches)

    def mean_batch(self, stage: str) -> float:
        """Mean songs (or windows) per batched step."""
        count, total = self.batches[stage]
        return total / count if count else float("nan")


def measured(stack: LocalStack, run: Callable[[], tuple[list[SongTiming], float]]) -> Row:
    """Run one mode and summarize it with the processes' CPU and batch counters."""
    before = Usage.snapshot(stack)
    timings, wall = run()
    return summarize(timings, wall, Usage.snapshot(stack).since(before))


def free_ports(count: int) -> int:
    """The first of `count` consecutive free ports on 127.0.0.1, from a random start (so that stacks
    started at the same moment on a shared machine do not pick the same ports)."""
    for _ in range(200):
        base = random.randrange(20000, 60000 - count)
        try:
            for port in range(base, base + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free ports")


def write_bench_models(root: Path) -> None:
    """The demo models, with the DiffRhythm 2 DiT and decoder replaced by the bench sizes."""
    diffrhythm2, _ = write_demo(root)
    write_demo_checkpoint(diffrhythm2, BENCH_DIT, seed=13)
    write_demo_decoder(diffrhythm2, BENCH_DECODER)


def main() -> int:
    """Start the stack, run every N both ways, print the table; exit 1 if the N = 8 target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,2,4,8,16", help="numbers of songs, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0, help="song length (default 20 s = 10 blocks)")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--max-batch", type=int, default=16, help="diffusion stage max_batch")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each mode per N; the fastest is kept")
    args = parser.parse_args()
    counts = [int(n) for n in args.counts.split(",")]
    os.environ["SONGSMITH_MAX_RUNNING_JOBS"] = str(max(counts))
    os.environ["SONGSMITH_MAX_BATCH"] = str(args.max_batch)
    lyrics = EXAMPLE_LYRICS.read_text(encoding="utf-8")

    def request(job_id: str, seed: int) -> song_pb2.SongRequest:
        song = song_pb2.SongRequest(
            job_id=job_id,
            lyrics=lyrics,
            style_prompt=EXAMPLE_STYLE,
            seed=seed,
            steps=args.steps,
            format=song_pb2.AUDIO_FORMAT_WAV,
        )
        song.max_duration.FromNanoseconds(round(args.seconds * 1e9))
        return song

    results: dict[int, tuple[Row, Row, tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        write_bench_models(root / "models")
        base = free_ports(10)
        stack = LocalStack(plan(discover(root / "models"), base, base + 5), root / "var")
        stack.start()
        try:
            if problems := stack.wait_healthy(300):
                raise SystemExit(f"stack did not start: {problems}")
            client = SongClient(stack.plan.gateway.address)
            run_song(client, request("warm-up", 1))
            for n in counts:
                load_before = os.getloadavg()[0]
                runs: dict[str, list[Row]] = {"together": [], "in-turn": []}
                for round_index in range(args.rounds):
                    for mode, run in (("together", run_concurrently), ("in-turn", run_one_after_another)):
                        songs = [request(f"n{n}-{mode}-{round_index}-{i}", 100 + i) for i in range(n)]
                        runs[mode].append(measured(stack, lambda run=run, songs=songs: run(client, songs)))
                together, in_turn = (max(runs[mode], key=lambda row: row.songs_per_hour) for mode in runs)
                results[n] = (together, in_turn, (load_before, os.getloadavg()[0]))
                print(
                    f"N={n} done: {together.songs_per_hour:.0f} vs {in_turn.songs_per_hour:.0f} songs/h",
                    flush=True,
                )
            client.close()
        finally:
            stack.stop()
    return report(results, args)


def report(results: dict[int, tuple[Row, Row, tuple[float, float]]], args: argparse.Namespace) -> int:
    """Print the table and the target check; the exit code says whether the target was met."""
    print(
        f"\nDiT dim {BENCH_DIT.dim}, depth {BENCH_DIT.depth}, heads {BENCH_DIT.heads}; "
        "4-stage 48 kHz decoder; "
        f"{args.seconds:g} s songs, {args.steps} steps, cfg 2.0, WAV; diffusion max_batch {args.max_batch}; "
        f"fastest of {args.rounds} rounds; "
        f"{os.cpu_count()} CPUs\n"
    )
    print(
        "| N | mode | songs/h | vs in turn | first audio s | block median s | block p95 s "
        "| p95 vs in turn | load avg |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for n, (together, in_turn, (load_before, load_after)) in results.items():
        gain = together.songs_per_hour / in_turn.songs_per_hour
        p95 = together.block_p95_s / in_turn.block_p95_s
        load = f"{load_before:.1f} -> {load_after:.1f}"
        for mode, row, ratio, p95_ratio in (
            ("at once", together, f"{gain:.2f}x", f"{p95:.2f}x"),
            ("in turn", in_turn, "1.00x", "1.00x"),
        ):
            print(
                f"| {n} | {mode} | {row.songs_per_hour:.0f} | {ratio} | {row.first_audio_s:.2f} | "
                f"{row.block_median_s:.3f} | {row.block_p95_s:.3f} | {p95_ratio} | {load} |"
            )
    names = list(next(iter(results.values()))[0].cpu_per_song)
    print(
        "\nCPU seconds per song by process, and mean batch sizes "
        "(diffusion songs/step, vocoder windows/batch):\n"
    )
    print(f"| N | mode | {' | '.join(names)} | total | songs/step | windows/batch |")
    print(f"|---:|---|{'---:|' * (len(names) + 3)}")
    for n, (together, in_turn, _) in results.items():
        for mode, row in (("at once", together), ("in turn", in_turn)):
            cpu = " | ".join(f"{row.cpu_per_song[name]:.2f}" for name in names)
            print(
                f"| {n} | {mode} | {cpu} | {sum(row.cpu_per_song.values()):.2f} | "
                f"{row.songs_per_step:.2f} | {row.windows_per_batch:.2f} |"
            )
    if TARGET_N not in results:
        return 0
    together, in_turn, _ = results[TARGET_N]
    gain = together.songs_per_hour / in_turn.songs_per_hour
    p95 = together.block_p95_s / in_turn.block_p95_s
    met = gain >= TARGET_THROUGHPUT and p95 <= TARGET_P95
    print(
        f"\nN = {TARGET_N}: {gain:.2f}x the songs per hour (target >= {TARGET_THROUGHPUT:g}x), p95 block "
        f"latency {p95:.2f}x (target <= {TARGET_P95:g}x): {'met' if met else 'MISSED'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
