"""Server reflection over real gRPC: v1 (what current clients ask for first) beside v1alpha, and a
reflection stream its caller abandons is not logged as an error."""

from __future__ import annotations

import logging
import threading
import time

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from tests.helpers import running_stage
from tests.runtime.harness import SERVICE, spec

V1_METHOD = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
V1ALPHA_METHOD = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


def _string_field(number: int, text: str) -> bytes:
    """One length-delimited protobuf field, encoded by hand (lengths below 128 bytes)."""
    data = text.encode()
    assert len(data) < 128
    return bytes([number << 3 | 2, len(data)]) + data


# v1 ServerReflectionRequest fields, as grpc/reflection/v1/reflection.proto numbers them.
LIST_SERVICES = 7
FILE_CONTAINING_SYMBOL = 4


@pytest.fixture
def server_address():
    """A harness stage server on 127.0.0.1."""
    with running_stage(spec()) as server:
        yield f"127.0.0.1:{server.port}"


def _ask_v1(address: str, *requests: bytes) -> list[reflection_pb2.ServerReflectionResponse]:
    """Send raw v1 requests on the v1 method; the replies, read with the (wire-identical) v1alpha
    message class."""
    with grpc.insecure_channel(address) as channel:
        call = channel.stream_stream(V1_METHOD)
        replies = list(call(iter(requests), timeout=10))
    return [reflection_pb2.ServerReflectionResponse.FromString(reply) for reply in replies]


def test_v1_lists_every_service(server_address: str) -> None:
    (reply,) = _ask_v1(server_address, _string_field(LIST_SERVICES, ""))
    names = {service.name for service in reply.list_services_response.service}
    assert names == {
        SERVICE,
        "songsmith.v1.ModelInfoService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }


def test_v1_describes_services_including_itself(server_address: str) -> None:
    health, reflection = _ask_v1(
        server_address,
        _string_field(FILE_CONTAINING_SYMBOL, "grpc.health.v1.Health"),
        _string_field(FILE_CONTAINING_SYMBOL, "grpc.reflection.v1.ServerReflection"),
    )
    files = {}
    for reply in (health, reflection):
        for raw in reply.file_descriptor_response.file_descriptor_proto:
            file = descriptor_pb2.FileDescriptorProto.FromString(raw)
            files[file.name] = file
    assert files["grpc_health/v1/health.proto"].service[0].name == "Health"
    v1 = files["grpc/reflection/v1/reflection.proto"]
    assert v1.package == "grpc.reflection.v1"
    (method,) = v1.service[0].method
    assert (method.input_type, method.output_type) == (
        ".grpc.reflection.v1.ServerReflectionRequest",
        ".grpc.reflection.v1.ServerReflectionResponse",
    )
    referenced = {
        field.type_name for message in v1.message_type for field in message.field if field.type_name
    }
    assert referenced and all(name.startswith(".grpc.reflection.v1.") for name in referenced)


def test_v1alpha_still_answers(server_address: str) -> None:
    with grpc.insecure_channel(server_address) as channel:
        call = channel.stream_stream(
            V1ALPHA_METHOD,
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        (reply,) = call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    assert SERVICE in {service.name for service in reply.list_services_response.service}


@pytest.mark.parametrize("method", [V1_METHOD, V1ALPHA_METHOD])
def test_an_abandoned_reflection_stream_is_not_an_error(
    method: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The client asks once, reads the answer, then neither ends its stream nor waits: its deadline
    ends the call while the server waits for the next request. Stopping the server waits for the
    call's handler to finish, so everything it logged is in by then."""
    release = threading.Event()

    def requests():
        yield _string_field(LIST_SERVICES, "")
        release.wait(10)

    with (
        caplog.at_level(logging.DEBUG),
        running_stage(spec()) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        call = channel.stream_stream(method)(requests(), timeout=1.0)
        try:
            assert next(call)
            with pytest.raises(grpc.RpcError) as caught:
                next(call)
            assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            time.sleep(0.5)
        finally:
            release.set()
    errors = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert not errors, [record.getMessage() for record in errors]
