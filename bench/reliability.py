"""Issue 18's reproductions on this tree and on a baseline revision, side by side.

Each scenario provokes one failure from outside, as a client would, on real processes on 127.0.0.1
with the demo model: four songs beyond the stages' capacity (every stage one call at a time, no
queue), a 12 s outage of the tokenizer and the vocoder, a vocoder SIGKILLed mid-song, four open
song streams against job calls and a burst of 80 GetJob calls with 20 health checks, a dropped
Generate stream, the result file while a song streams, a style recording too large for a request,
an undecodable one, an unwritable results folder, and a write lock held 12 s on the jobs file
(default store settings). `--baseline REV` is exported with `git archive` and measured first, then
this tree; the table gives each figure for both. Each tree runs in processes of its own (`--run`),
importing its own code.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.client import SongClient
from gateway.launcher import STAGE_THREADING, LocalStack, _arguments, plan
from gateway.model_store import write_demo
from gateway.models import discover
from gateway.server import GatewayConfig
from services.runtime.interceptor import field_violations, retry_delay
from songsmith.v1 import song_pb2
from tests.gateway.songs import assemble, request
from tests.helpers import free_port, free_port_block

FIGURE = "FIGURE "
SERVING = health_pb2.HealthCheckResponse.SERVING
LOCK_HELD_S = 12.0
ONE_AT_A_TIME = ["--max-concurrent", "1", "--max-queue", "0", "--retry-after-s", "0.3"]
STAGE_FLAGS = {
    "tokenizer": ONE_AT_A_TIME,
    "style": ONE_AT_A_TIME,
    "diffusion": [*ONE_AT_A_TIME, "--max-batch", "1"],
    "vocoder": ONE_AT_A_TIME,
    "gateway": ["--max-running-jobs", "4"],
}


def say(name: str, value: object) -> None:
    """Report one figure (the driver reads it back)."""
    print(f"{FIGURE}{name}: {value}", flush=True)


def health(address: str) -> int:
    """The server's health status (-1 when it does not answer)."""
    with grpc.insecure_channel(address) as channel:
        try:
            return (
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2).status
            )
        except grpc.RpcError:
            return -1


def outcome(events: Callable[[], Iterator[song_pb2.SongEvent]]) -> str:
    """SUCCEEDED, or the status a song's stream ended with."""
    try:
        _, seen = assemble(events())
        return "SUCCEEDED" if seen[-1].HasField("done") else "ended without done"
    except grpc.RpcError as exc:
        return f"{exc.code().name}: {(exc.details() or '')[:100]}"


class _Stack(LocalStack):
    """The local stack with the capacity flags above (the baseline's LocalStack takes no flags)."""

    def launch(self, name: str) -> None:
        service = next(s for s in self.services if s.name == name)
        logs = self.var_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "gateway.cli", "serve", service.component]
        command += _arguments(service, self.plan, self.var_dir) + STAGE_FLAGS.get(name, [])
        environment = {**STAGE_THREADING, **os.environ, "SONGSMITH_DRAIN_DELAY_S": "0"}
        with (logs / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=environment
            )


def _wait_serving(address: str) -> None:
    while health(address) != SERVING:
        time.sleep(0.05)


def stage_scenarios(root: Path, models: Path) -> None:
    """Items 1 to 3 on a stack of one-call stages."""
    base = free_port_block(10)
    stack = _Stack(plan(discover(models), base, 0), root / "stack")
    stack.start()
    assert not stack.wait_healthy(300), "the stack did not start"
    addresses = {s.name: s.address for s in stack.services}
    client = SongClient(addresses["gateway"])
    try:
        songs = [request(f"crowd-{i}", seconds=4, seed=i) for i in range(4)]
        for song in songs:
            client.submit(song)
        with ThreadPoolExecutor(4) as pool:
            ends = list(pool.map(lambda s: outcome(lambda: client.watch(s.job_id, timeout=300)), songs))
        failed = [
            end.split(":")[0] + " (" + end.split(":")[1].strip() + ")" for end in ends if end != "SUCCEEDED"
        ]
        say("1. four songs, stages one call each", f"{ends.count('SUCCEEDED')}/4 succeeded {failed}")

        for name in ("tokenizer", "vocoder"):
            stack.processes[name].kill()
            stack.processes[name].wait()
        time.sleep(12)
        for name in ("tokenizer", "vocoder"):
            stack.launch(name)
        for name in ("tokenizer", "vocoder"):
            _wait_serving(addresses[name])
        recovered = time.monotonic()
        failures = 0
        while True:
            song = request(f"after-{failures}", seconds=4)
            if outcome(lambda song=song: client.generate(song, timeout=120)) == "SUCCEEDED":
                break
            failures += 1
            time.sleep(0.5)
        say(
            "2. songs failing after a 12 s outage, stages SERVING",
            f"{failures} failed; first success {time.monotonic() - recovered:.1f} s after recovery",
        )

        expected, _ = assemble(client.generate(request("vocoder-whole", seconds=20), timeout=300))
        killed: list[float] = []

        def kill_after_first_audio(events: Iterator[song_pb2.SongEvent]) -> Iterator[song_pb2.SongEvent]:
            for event in events:
                if event.HasField("audio") and not killed:
                    killed.append(time.monotonic())
                    stack.processes["vocoder"].kill()
                    stack.processes["vocoder"].wait()
                    stack.launch("vocoder")
                yield event

        try:
            audio, _ = assemble(
                kill_after_first_audio(client.generate(request("vocoder-killed", seconds=20), timeout=300))
            )
            took = time.monotonic() - killed[0]
            finished = f"succeeded {took:.1f} s after the kill, identical: {audio == expected}"
        except grpc.RpcError as exc:
            finished = f"{exc.code().name} {time.monotonic() - killed[0]:.2f} s after the kill"
        say("3. vocoder SIGKILLed mid-song", finished)
    finally:
        client.close()
        stack.stop()


def _start_gateway(folder: Path, models: Path, flags: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        *(
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "gateway",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ),
        *("--metrics-port", "0", "--model-root", str(models), "--jobs-db", str(folder / "jobs.sqlite3")),
        *("--results-dir", str(folder / "results"), "--drain-delay-s", "0", "--log-format", "text"),
        *("--job-poll-s", "0.2", *flags),
    ]
    with (folder / "gateway.log").open("ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **STAGE_THREADING}
        )
    address = f"127.0.0.1:{port}"
    while health(address) != SERVING:
        assert process.poll() is None, (folder / "gateway.log").read_text()[-2000:]
        time.sleep(0.2)
    return process, address


def _job(client: SongClient, job_id: str) -> song_pb2.Job:
    return client.stub.GetJob(song_pb2.GetJobRequest(job_id=job_id), timeout=60).job


def _code(call: Callable[[], object]) -> str:
    try:
        call()
        return "OK"
    except grpc.RpcError as exc:
        return exc.code().name


def gateway_scenarios(root: Path, models: Path) -> None:
    """Items 5 to 8 on a gateway with four song streams and in-process stages."""
    folder = root / "gateway"
    control = ["--control-max-concurrent", "2", "--control-max-queue", "4"]
    known = {field.name for field in dataclasses.fields(GatewayConfig)}
    flags = ["--max-running-jobs", "1", "--max-concurrent", "4", "--max-queue", "0"]
    process, address = _start_gateway(
        folder, models, flags + (control if "control_max_queue" in known else [])
    )
    client = SongClient(address)
    client.submit(request("keeps-running", seconds=120))
    while _job(client, "keeps-running").state != song_pb2.JOB_STATE_RUNNING:
        time.sleep(0.1)
    client.submit(request("stays-queued"))
    watchers = [client.watch("stays-queued", timeout=120) for _ in range(4)]
    for watcher in watchers:
        next(iter(watcher))
    get = song_pb2.GetJobRequest(job_id="stays-queued")
    answers = {
        "GetJob": _code(lambda: client.stub.GetJob(get, timeout=10)),
        "ListJobs": _code(lambda: client.stub.ListJobs(song_pb2.ListJobsRequest(), timeout=10)),
    }
    stub = health_pb2_grpc.HealthStub(client.channel)
    start = threading.Barrier(100)

    def get_job() -> str:
        start.wait()
        try:
            client.stub.GetJob(get, timeout=10)
            return "answered"
        except grpc.RpcError as exc:
            return "refused with RetryInfo" if retry_delay(exc) else "refused bare"

    def check() -> str:
        start.wait()
        try:
            return (
                "SERVING"
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status == SERVING
                else "not"
            )
        except grpc.RpcError:
            return "refused"

    with ThreadPoolExecutor(100) as pool:
        gets = [pool.submit(get_job) for _ in range(80)]
        checks = [pool.submit(check) for _ in range(20)]
        gets, checks = [g.result() for g in gets], [c.result() for c in checks]
    cancel = song_pb2.CancelJobRequest(job_id="stays-queued")
    answers["CancelJob"] = _code(lambda: client.stub.CancelJob(cancel, timeout=30))
    say("5. job calls with 4 song streams open", answers)
    say(
        "5. burst: 80 GetJob, 20 health checks",
        f"GetJob refused {80 - gets.count('answered')}, without RetryInfo {gets.count('refused bare')};"
        f" health answered {checks.count('SERVING')}/20",
    )
    for watcher in watchers:
        watcher.cancel()
    time.sleep(1)
    for job_id in ("stays-queued", "keeps-running"):
        client.stub.CancelJob(song_pb2.CancelJobRequest(job_id=job_id), timeout=30)

    dropped = client.generate(request("dropped", seconds=10), timeout=120)
    for event in dropped:
        if event.HasField("progress") and event.progress.stage == "diffusion":
            break
    dropped.cancel()
    time.sleep(1.5)
    state = song_pb2.JobState.Name(_job(client, "dropped").state)
    again = outcome(lambda: client.generate(request("dropped", seconds=10), timeout=120))
    say("6. a dropped Generate stream", f"job {state} 1.5 s later; Generate again: {again}")

    results = folder / "results"
    on_disk = []
    for event in client.generate(request("written", seconds=20), timeout=120):
        if event.HasField("audio"):
            on_disk.append(sum(p.stat().st_size for p in results.glob("written.wav*")))
    size = (results / "written.wav").stat().st_size
    say("7. result bytes on disk halfway through the song's audio", f"{on_disk[len(on_disk) // 2]} of {size}")
    recording, lyrics = folder / "long-take.flac", folder / "lyrics.txt"
    recording.write_bytes(bytes(5 << 20))
    lyrics.write_text("[verse]\nhello there", encoding="utf-8")
    cli = subprocess.run(
        [
            *(sys.executable, "-m", "gateway.cli", "generate", "--server", address, "--lyrics", str(lyrics)),
            *("--style-audio", str(recording), "-q", "-o", str(folder / "x.wav")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    say("7. CLI, a 5 MiB style recording", f"exit {cli.returncode}: {cli.stderr.strip()[-160:]}")

    song = request("bad-recording", style_prompt="")
    song.style_audio = b"definitely not a recording " * 50
    try:
        list(client.generate(song, timeout=60))
    except grpc.RpcError as exc:
        say(
            "8. undecodable style recording",
            f"{exc.code().name} {[(v.field, v.description) for v in field_violations(exc)]}",
        )
    kept = results.rename(folder / "results-kept")
    results.write_text("a file where the folder was")
    try:
        list(client.generate(request("nowhere"), timeout=60))
        failure = "succeeded"
    except grpc.RpcError as exc:
        failure = f"{exc.code().name}, server path in the message: {str(folder) in (exc.details() or '')}"
    results.unlink()
    kept.rename(results)
    say(
        "8. unwritable results folder",
        f"{failure}; partial files left: {len(list(folder.rglob('*.partial')))}",
    )
    client.close()
    process.send_signal(signal.SIGTERM)
    process.wait(60)


def store_scenarios(root: Path, models: Path) -> None:
    """Item 4: a write lock held 12 s on the jobs file, default store settings."""
    folder = root / "store"
    process, address = _start_gateway(folder, models, ["--max-running-jobs", "1"])
    client = SongClient(address)
    client.submit(request("through-the-lock", seconds=20))
    client.submit(request("cancelled-meanwhile"))
    while _job(client, "through-the-lock").blocks_done < 1:
        time.sleep(0.05)
    locker = sqlite3.connect(folder / "jobs.sqlite3", isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN IMMEDIATE")
    locked = time.monotonic()
    release = threading.Timer(LOCK_HELD_S, lambda: (locker.execute("ROLLBACK"), locker.close()))
    release.start()
    not_serving = None
    while time.monotonic() - locked < 4 and not_serving is None:
        if health(address) != SERVING:
            not_serving = time.monotonic() - locked
        time.sleep(0.1)
    began = time.monotonic()
    read = _code(lambda: client.stub.GetJob(song_pb2.GetJobRequest(job_id="through-the-lock"), timeout=30))
    read_s = time.monotonic() - began
    began = time.monotonic()
    cancel = song_pb2.CancelJobRequest(job_id="cancelled-meanwhile")
    cancelled = _code(lambda: client.stub.CancelJob(cancel, timeout=30))
    cancel_s = time.monotonic() - began
    release.join()
    serving_again = time.monotonic()
    while health(address) != SERVING:
        time.sleep(0.1)
    health_figure = "SERVING throughout the first 4 s"
    if not_serving is not None:
        health_figure = f"NOT_SERVING {not_serving:.1f} s after the lock was taken"
    say(
        "4. health under a 12 s lock",
        f"{health_figure}; SERVING {time.monotonic() - serving_again:.1f} s after it went",
    )
    say(
        "4. GetJob, CancelJob during the lock (30 s deadline)",
        f"GetJob {read} in {read_s:.1f} s; CancelJob {cancelled} in {cancel_s:.1f} s",
    )
    deadline = time.monotonic() + 120
    while _job(client, "through-the-lock").state in (song_pb2.JOB_STATE_QUEUED, song_pb2.JOB_STATE_RUNNING):
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    state = song_pb2.JobState.Name(_job(client, "through-the-lock").state)
    say("4. the song under the lock", f"{state} {time.monotonic() - locked:.1f} s after the lock was taken")
    client.close()
    locker = sqlite3.connect(folder / "jobs.sqlite3", isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(90)
        stopped = f"exited {process.returncode} in {time.monotonic() - began:.1f} s"
    except subprocess.TimeoutExpired:
        process.kill()
        stopped = "still running after 90 s"
    locker.execute("ROLLBACK")
    locker.close()
    say("4. SIGTERM while the lock is held", stopped)


def run_here() -> None:
    """Every scenario on the code this process imports."""
    root = Path(tempfile.mkdtemp(prefix="reliability-"))
    write_demo(root / "models")
    for scenarios in (stage_scenarios, gateway_scenarios, store_scenarios):
        scenarios(root, root / "models")


def measure(tree: Path, log: Path) -> dict[str, str]:
    """Run the scenarios in a process importing `tree`; its figures by name."""
    environment = {**os.environ, "PYTHONPATH": f"{tree}:{tree / 'protos'}"}
    with log.open("w") as output:
        subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--run"],
            cwd=tree,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            check=False,
        )
    lines = [
        line[len(FIGURE) :]
        for line in log.read_text(errors="replace").splitlines()
        if line.startswith(FIGURE)
    ]
    return dict(line.split(": ", 1) for line in lines)


def main() -> int:
    """Measure the baseline revision and this tree; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--baseline", default="b989c1b", help="git revision to compare with (before issue 18)"
    )
    parser.add_argument("--run", action="store_true", help="run the scenarios on the imported code only")
    args = parser.parse_args()
    if args.run:
        run_here()
        return 0
    here = Path(__file__).resolve().parents[1]
    work = Path(tempfile.mkdtemp(prefix="reliability-trees-"))
    baseline = work / "baseline"
    baseline.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(here), "archive", args.baseline], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive.stdout, check=True)
    before = measure(baseline, work / "baseline.log")
    after = measure(here, work / "this-tree.log")
    print(f"\nissue 18 reproductions; baseline {args.baseline}, logs in {work}")
    print(f"| scenario | baseline {args.baseline} | this tree |")
    print("|---|---|---|")
    for name in dict.fromkeys([*before, *after]):
        print(f"| {name} | {before.get(name, '(not reached)')} | {after.get(name, '(not reached)')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
