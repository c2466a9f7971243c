"""Tensor streaming over loopback gRPC against a plain memory copy of the same bytes.

A harness server runs as its own process; the client streams a float32 tensor of 1, 16, 64 and
256 MiB through the codec (1 MiB chunks), the server reassembles it (size and CRC checks) and
streams it back, and the client reassembles the echo. Throughput counts the bytes moved in both
directions. Two codec paths are timed: proto messages (`iter_tensor_chunks` / `add`) and wire bytes
(`iter_serialized_chunks` / `add_serialized`, one copy per side). The baseline is `bytes(...)` of
the same payload (one memcpy into a fresh buffer), measured in the same run; raw gRPC (the same
1 MiB messages echoed with no codec at all) shows what the transport alone allows. Target: at least 0.5x
the memory copy from 16 MiB up, with no message on the wire above 4 MiB.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
from google.protobuf import wrappers_pb2

from services.runtime.codec import (
    MAX_CHUNK_BYTES,
    TensorAssembler,
    assemble_tensor,
    iter_serialized_chunks,
    iter_tensor_chunks,
)
from tests.helpers import free_port, wait_for_health
from tests.runtime.harness import HarnessClient

ROOT = Path(__file__).resolve().parents[1]
MIB = 1 << 20
WIRE_LIMIT = 4 * MIB


def _best_of(repeats: int, run) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def measure(client: HarnessClient, size_mib: int, repeats: int) -> tuple[float, float, float, float, int]:
    """GB/s of the two codec echo paths and of raw gRPC (both directions), GB/s of a memcpy, and the
    largest message on the wire."""
    array = np.frombuffer(np.random.default_rng(size_mib).bytes(size_mib * MIB), dtype=np.float32)
    largest = 0

    def echo_messages() -> None:
        nonlocal largest
        chunks = list(client.echo(iter_tensor_chunks(array), timeout=600))
        largest = max(largest, *(c.ByteSize() for c in chunks))
        if assemble_tensor(chunks, array.nbytes).tobytes() != array.tobytes():
            raise AssertionError("echo differs from the original")

    def echo_serialized() -> None:
        nonlocal largest
        assembler = TensorAssembler(array.nbytes)
        for raw in client.echo_serialized(iter_serialized_chunks(array), timeout=600):
            largest = max(largest, len(raw))
            assembler.add_serialized(raw)
        if assembler.result().tobytes() != array.tobytes():
            raise AssertionError("echo differs from the original")

    payload = memoryview(array.view(np.uint8))
    pieces = [payload[i : i + MAX_CHUNK_BYTES].tobytes() for i in range(0, len(payload), MAX_CHUNK_BYTES)]

    def echo_raw() -> None:
        if sum(len(piece) for piece in client.echo_bytes(iter(pieces), timeout=600)) != len(payload):
            raise AssertionError("raw echo lost bytes")

    raw_s = _best_of(repeats, echo_raw)
    messages_s = _best_of(repeats, echo_messages)
    serialized_s = _best_of(repeats, echo_serialized)
    copy_s = _best_of(repeats * 3, lambda: bytes(payload))
    gigabytes = array.nbytes / 1e9
    rates = (2 * gigabytes / messages_s, 2 * gigabytes / serialized_s, 2 * gigabytes / raw_s)
    return (*rates, gigabytes / copy_s, largest)


def main() -> int:
    """Start the harness server, measure every size, print the table; exit 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,16,64,256", help="tensor sizes in MiB")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.runtime.harness",
            "--port",
            str(port),
            "--log-format",
            "text",
            "--max-message-bytes",
            str(WIRE_LIMIT),
        ],
        cwd=ROOT,
        env={**os.environ, "SONGSMITH_LOG_LEVEL": "WARNING"},
    )
    options = [("grpc.max_receive_message_length", WIRE_LIMIT), ("grpc.max_send_message_length", WIRE_LIMIT)]
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=options)
    missed = False
    try:
        from grpc_health.v1 import health_pb2

        wait_for_health(channel, health_pb2.HealthCheckResponse.SERVING)
        client = HarnessClient(channel)
        client.sleep(wrappers_pb2.DoubleValue(value=0), timeout=10)
        limits = f"chunk size {MAX_CHUNK_BYTES // MIB} MiB, wire limit {WIRE_LIMIT // MIB} MiB"
        print(f"{limits}, best of {args.repeats}")
        print(
            "| tensor | echo GB/s, proto messages | echo GB/s, wire bytes | raw gRPC GB/s, no codec "
            "| memcpy GB/s | ratio (wire bytes / memcpy) | wire bytes / raw gRPC | largest message | target |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|:---|")
        for size in (int(s) for s in args.sizes.split(",")):
            messages_rate, grpc_rate, raw_rate, copy_rate, largest = measure(client, size, args.repeats)
            ratio = grpc_rate / copy_rate
            target = size < 16 or ratio >= 0.5
            missed |= not target or largest > WIRE_LIMIT
            verdict = "-" if size < 16 else ("met" if target else "MISSED")
            row = [
                f"{size} MiB",
                f"{messages_rate:.2f}",
                f"{grpc_rate:.2f}",
                f"{raw_rate:.2f}",
                f"{copy_rate:.2f}",
                f"{ratio:.2f}x",
                f"{grpc_rate / raw_rate:.2f}x",
                f"{largest / MIB:.2f} MiB",
            ]
            print("| " + " | ".join([*row, verdict]) + " |")
    finally:
        channel.close()
        server.terminate()
        server.wait(30)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
