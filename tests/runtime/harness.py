"""A small service that exercises the runtime: tensor echoes, a cancellable sleep, typed failures.

Tests serve it in-process through `StageServer` or as its own process (`python -m
tests.runtime.harness --port N`); the transport benchmark uses its tensor echo.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import grpc
from google.protobuf import wrappers_pb2

from services.runtime import errors
from services.runtime.calls import call_token
from services.runtime.codec import TensorAssembler, iter_serialized_chunks, iter_tensor_chunks
from services.runtime.config import ServerConfig, load_config
from services.runtime.server import StageSpec, serve
from services.runtime.slot import ModelSlot
from songsmith.v1 import tensor_pb2

SERVICE = "songsmith.test.Harness"
ECHO_MAX_BYTES = 512 << 20

FAILURES: dict[str, Exception] = {
    "invalid": errors.InvalidArgumentError(
        violations=[
            errors.FieldViolation("lyrics", "line 3: nothing to sing"),
            errors.FieldViolation("steps", "must be in 2..200"),
        ]
    ),
    "exhausted": errors.ResourceExhaustedError("queue full", retry_after_s=2.5),
    "precondition": errors.FailedPreconditionError("no model installed"),
    "unavailable": errors.UnavailableError("draining"),
    "deadline": errors.DeadlineExceededError("too slow"),
    "cancelled": errors.CancelledError("gone"),
    "bug": ZeroDivisionError("division by zero"),
}


class HarnessEngine:
    """Records what the sleeping calls did, so tests can see that cancellation stopped them."""

    def __init__(self) -> None:
        self.sleeps_started = threading.Event()
        self.sleeps_interrupted = 0


def _echo(requests: Iterator[tensor_pb2.TensorChunk], context: grpc.ServicerContext):
    assembler = TensorAssembler(ECHO_MAX_BYTES, field="chunks")
    for chunk in requests:
        assembler.add(chunk)
    yield from iter_tensor_chunks(assembler.result())


def _echo_serialized(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    assembler = TensorAssembler(ECHO_MAX_BYTES, field="chunks")
    for raw in requests:
        assembler.add_serialized(raw)
    yield from iter_serialized_chunks(assembler.result())


def _echo_bytes(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    """Raw gRPC with no codec at all: receive every message, then send them back."""
    received = list(requests)
    yield from received


def register(server: grpc.Server, slot: ModelSlot) -> None:
    """Add the harness service to `server`."""

    def sleep(request: wrappers_pb2.DoubleValue, context: grpc.ServicerContext) -> wrappers_pb2.StringValue:
        engine: HarnessEngine = slot.get()
        token = call_token(context)
        engine.sleeps_started.set()
        try:
            token.wait(request.value)
        except errors.ServiceError:
            engine.sleeps_interrupted += 1
            raise
        return wrappers_pb2.StringValue(value="slept")

    def fail(request: wrappers_pb2.StringValue, context: grpc.ServicerContext) -> wrappers_pb2.StringValue:
        slot.get()
        raise FAILURES[request.value]

    handlers = {
        "Echo": grpc.stream_stream_rpc_method_handler(
            _echo,
            request_deserializer=tensor_pb2.TensorChunk.FromString,
            response_serializer=tensor_pb2.TensorChunk.SerializeToString,
        ),
        "EchoSerialized": grpc.stream_stream_rpc_method_handler(_echo_serialized),
        "EchoBytes": grpc.stream_stream_rpc_method_handler(_echo_bytes),
        "Sleep": grpc.unary_unary_rpc_method_handler(
            sleep,
            request_deserializer=wrappers_pb2.DoubleValue.FromString,
            response_serializer=wrappers_pb2.StringValue.SerializeToString,
        ),
        "Fail": grpc.unary_unary_rpc_method_handler(
            fail,
            request_deserializer=wrappers_pb2.StringValue.FromString,
            response_serializer=wrappers_pb2.StringValue.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


def spec(load=HarnessEngine) -> StageSpec:
    """The harness as a stage; `load` builds its engine (tests pass a slow or failing one)."""
    return StageSpec(name="harness", service_name=SERVICE, load=load, register=register)


class HarnessClient:
    """Calls the harness service over a channel."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.echo = channel.stream_stream(
            f"/{SERVICE}/Echo",
            request_serializer=tensor_pb2.TensorChunk.SerializeToString,
            response_deserializer=tensor_pb2.TensorChunk.FromString,
        )
        self.echo_serialized = channel.stream_stream(f"/{SERVICE}/EchoSerialized")
        self.echo_bytes = channel.stream_stream(f"/{SERVICE}/EchoBytes")
        self.sleep = channel.unary_unary(
            f"/{SERVICE}/Sleep",
            request_serializer=wrappers_pb2.DoubleValue.SerializeToString,
            response_deserializer=wrappers_pb2.StringValue.FromString,
        )
        self.fail = channel.unary_unary(
            f"/{SERVICE}/Fail",
            request_serializer=wrappers_pb2.StringValue.SerializeToString,
            response_deserializer=wrappers_pb2.StringValue.FromString,
        )


if __name__ == "__main__":
    serve(load_config(ServerConfig, sys.argv[1:], prog="harness"), spec())
