"""Tensor streaming over loopback gRPC against a plain memory copy of the same bytes.

A harness server runs as its own process; the client streams a float32 tensor of 1, 16, 64 and
256 MiB through the codec (1 MiB chunks), the server reassembles it (size and CRC checks) and
streams it back, and the client reassembles the echo. Throughput counts the bytes moved in both
directions. Two codec paths are timed: proto messages (`iter_tensor_chunks` / `add`) and wire bytes
(`iter_serialized_chunks` / `add_serialized`, one copy per side). The baseline is `bytes(...)` of
the same payload (one memcpy into a fresh buffer), measured in the same run; raw gRPC (the same
1 MiB messages echoed with no codec at all) shows what gRPC alone allows, and a bare TCP socket echo
(no gRPC, no Python objects: `sendall` and `recv_into` buffers that are reused, in its own process)
shows what any transport over a loopback socket allows. Target: at least 0.5x the memory copy from
16 MiB up, with no message on the wire above 4 MiB.

Two caveats the table makes visible. A copy into a buffer that already exists (the last column)
runs at memory bandwidth, several times faster than a fresh one, which pays a page fault per 4 KiB.
And at 16 MiB the allocator hands back the buffer freed by the previous repeat, so the fresh copy
pays no page faults and runs as fast as a copy into an existing buffer.
The echo is timed alone; checking it against the original happens after the clock stops.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

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
LENGTH = struct.Struct("<Q")


def _receive_exactly(connection: socket.socket, buffer: memoryview) -> bool:
    """Fill `buffer` from the socket; False when the peer closed the connection first."""
    received = 0
    while received < len(buffer):
        count = connection.recv_into(buffer[received:])
        if count == 0:
            return False
        received += count
    return True


def serve_socket_echo(listener: socket.socket) -> None:
    """Echo length-prefixed payloads on one connection: the floor of any loopback socket transport."""
    connection, _ = listener.accept()
    header = bytearray(LENGTH.size)
    buffer = bytearray()
    while _receive_exactly(connection, memoryview(header)):
        size = LENGTH.unpack(header)[0]
        if len(buffer) < size:
            buffer = bytearray(size)
        payload = memoryview(buffer)[:size]
        if not _receive_exactly(connection, payload):
            return
        connection.sendall(payload)


class SocketEcho:
    """Client of `serve_socket_echo`: sends from one thread while receiving into a ready buffer."""

    def __init__(self) -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        spawn = multiprocessing.get_context("spawn")
        self._server = spawn.Process(target=serve_socket_echo, args=(listener,))
        self._server.start()
        self._connection = socket.create_connection(listener.getsockname())
        listener.close()

    def echo(self, payload: memoryview, into: memoryview) -> memoryview:
        """Send `payload` and receive its echo into `into` (same length)."""
        self._connection.sendall(LENGTH.pack(len(payload)))
        sender = threading.Thread(target=self._connection.sendall, args=(payload,))
        sender.start()
        if not _receive_exactly(self._connection, into):
            raise ConnectionError("the socket echo server closed the connection")
        sender.join()
        return into

    def close(self) -> None:
        """Stop the echo server process."""
        self._connection.close()
        self._server.join(30)


def _best_of(repeats: int, run: Callable[[], object], check: Callable[[object], bool]) -> float:
    """The shortest of `repeats` timed runs; each result is checked after its timing stops."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
        if not check(result):
            raise AssertionError("the echo differs from the original")
        del result
    return best


class Rates(NamedTuple):
    """One row of the table: GB/s of each path and the largest message seen on the wire."""

    proto_messages: float
    wire_bytes: float
    raw_grpc: float
    raw_socket: float
    fresh_copy: float
    reused_copy: float
    largest_message: int


def measure(client: HarnessClient, sockets: SocketEcho, size_mib: int, repeats: int) -> Rates:
    """Echo a tensor of `size_mib` through each path and copy it in memory, all timed in this run."""
    array = np.frombuffer(np.random.default_rng(size_mib).bytes(size_mib * MIB), dtype=np.float32)
    largest = 0

    def echo_messages() -> np.ndarray:
        nonlocal largest
        chunks = list(client.echo(iter_tensor_chunks(array), timeout=600))
        largest = max(largest, *(c.ByteSize() for c in chunks))
        return assemble_tensor(chunks, array.nbytes)

    def echo_serialized() -> np.ndarray:
        nonlocal largest
        assembler = TensorAssembler(array.nbytes)
        for raw in client.echo_serialized(iter_serialized_chunks(array), timeout=600):
            largest = max(largest, len(raw))
            assembler.add_serialized(raw)
        return assembler.result()

    payload = memoryview(array.view(np.uint8))
    pieces = [payload[i : i + MAX_CHUNK_BYTES].tobytes() for i in range(0, len(payload), MAX_CHUNK_BYTES)]

    def echo_raw() -> list[bytes]:
        return list(client.echo_bytes(iter(pieces), timeout=600))

    def same_array(echoed: np.ndarray) -> bool:
        return echoed.shape == array.shape and np.array_equal(echoed.view(np.uint8), array.view(np.uint8))

    destination = np.empty_like(array)
    socket_echo = memoryview(bytearray(len(payload)))

    def copy_into_existing() -> np.ndarray:
        np.copyto(destination, array)
        return destination

    raw_s = _best_of(repeats, echo_raw, lambda echoed: sum(map(len, echoed)) == len(payload))
    socket_s = _best_of(repeats, lambda: sockets.echo(payload, socket_echo), lambda echoed: echoed == payload)
    messages_s = _best_of(repeats, echo_messages, same_array)
    serialized_s = _best_of(repeats, echo_serialized, same_array)
    fresh_s = _best_of(repeats * 3, lambda: bytes(payload), lambda copied: len(copied) == len(payload))
    reused_s = _best_of(repeats * 3, copy_into_existing, same_array)
    gigabytes = array.nbytes / 1e9
    return Rates(
        proto_messages=2 * gigabytes / messages_s,
        wire_bytes=2 * gigabytes / serialized_s,
        raw_grpc=2 * gigabytes / raw_s,
        raw_socket=2 * gigabytes / socket_s,
        fresh_copy=gigabytes / fresh_s,
        reused_copy=gigabytes / reused_s,
        largest_message=largest,
    )


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
    sockets = SocketEcho()
    missed = False
    try:
        from grpc_health.v1 import health_pb2

        wait_for_health(channel, health_pb2.HealthCheckResponse.SERVING)
        client = HarnessClient(channel)
        client.sleep(wrappers_pb2.DoubleValue(value=0), timeout=10)
        limits = f"chunk size {MAX_CHUNK_BYTES // MIB} MiB, wire limit {WIRE_LIMIT // MIB} MiB"
        print(f"{limits}, best of {args.repeats}; echo rates count both directions")
        print(
            "| tensor | echo GB/s, proto messages | echo GB/s, wire bytes | raw gRPC GB/s, no codec "
            "| bare TCP socket GB/s | memcpy GB/s, fresh buffer | memcpy GB/s, existing buffer "
            "| ratio (wire bytes / memcpy) | target | wire bytes / raw gRPC | wire bytes / bare TCP "
            "| bare TCP / memcpy | largest message |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|:---|---:|---:|---:|---:|")
        for size in (int(s) for s in args.sizes.split(",")):
            rates = measure(client, sockets, size, args.repeats)
            ratio = rates.wire_bytes / rates.fresh_copy
            target = size < 16 or ratio >= 0.5
            missed |= not target or rates.largest_message > WIRE_LIMIT
            verdict = "-" if size < 16 else ("met" if target else "MISSED")
            row = [
                f"{size} MiB",
                f"{rates.proto_messages:.2f}",
                f"{rates.wire_bytes:.2f}",
                f"{rates.raw_grpc:.2f}",
                f"{rates.raw_socket:.2f}",
                f"{rates.fresh_copy:.2f}",
                f"{rates.reused_copy:.2f}",
                f"{ratio:.2f}x",
                verdict,
                f"{rates.wire_bytes / rates.raw_grpc:.2f}x",
                f"{rates.wire_bytes / rates.raw_socket:.2f}x",
                f"{rates.raw_socket / rates.fresh_copy:.2f}x",
                f"{rates.largest_message / MIB:.2f} MiB",
            ]
            print("| " + " | ".join(row) + " |")
    finally:
        sockets.close()
        channel.close()
        server.terminate()
        server.wait(30)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
