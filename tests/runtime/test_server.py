"""The stage server over real gRPC on 127.0.0.1: health, errors, admission, cancellation, transport."""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest
from google.protobuf import wrappers_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from services.runtime.codec import (
    MAX_CHUNK_BYTES,
    TensorAssembler,
    assemble_tensor,
    iter_serialized_chunks,
    iter_tensor_chunks,
)
from services.runtime.config import ServerConfig
from services.runtime.errors import FailedPreconditionError, FieldViolation
from services.runtime.interceptor import field_violations, retry_delay
from services.runtime.server import StageServer
from tests.helpers import health_status, running_stage, wait_for_health
from tests.runtime.harness import SERVICE, HarnessClient, HarnessEngine, spec
from tests.runtime.tensors import NUMPY_DTYPES, arrays, same_bits

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def harness():
    """A loaded harness server, a client for it, and its engine."""
    engine = HarnessEngine()
    with running_stage(spec(lambda: engine)) as server:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        yield HarnessClient(channel), engine, server
        channel.close()


@pytest.fixture(scope="module")
def echo_client():
    """One harness server shared by the many echoes of a property test."""
    with running_stage(spec(HarnessEngine)) as server:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        yield HarnessClient(channel)
        channel.close()


def test_health_follows_loading_and_draining() -> None:
    release = threading.Event()
    engine = HarnessEngine()

    def slow_load() -> HarnessEngine:
        release.wait(10)
        return engine

    server = StageServer(ServerConfig(port=0, drain_delay_s=1.0), spec(slow_load))
    server.start()
    loader = threading.Thread(target=server.load)
    loader.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    client = HarnessClient(channel)
    try:
        assert health_status(channel) == NOT_SERVING
        assert health_status(channel, SERVICE) == NOT_SERVING
        with pytest.raises(grpc.RpcError) as caught:
            client.sleep(wrappers_pb2.DoubleValue(value=0), timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        release.set()
        wait_for_health(channel, SERVING)
        assert health_status(channel, SERVICE) == SERVING

        in_flight = client.sleep.future(wrappers_pb2.DoubleValue(value=1.5), timeout=10)
        engine.sleeps_started.wait(5)
        stopper = threading.Thread(target=server.stop, kwargs={"grace": 10})
        stopper.start()
        wait_for_health(channel, NOT_SERVING, timeout=5)
        assert in_flight.result().value == "slept"
        stopper.join(10)
        assert server.stopped.is_set()
    finally:
        release.set()
        loader.join()
        channel.close()


def test_missing_model_answers_failed_precondition() -> None:
    def missing() -> None:
        raise FailedPreconditionError("no model at /models/diffrhythm2: model.safetensors is missing")

    with running_stage(spec(missing)) as server:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        assert health_status(channel) == NOT_SERVING
        with pytest.raises(grpc.RpcError) as caught:
            HarnessClient(channel).sleep(wrappers_pb2.DoubleValue(value=0), timeout=5)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "model.safetensors is missing" in caught.value.details()
        channel.close()


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("invalid", grpc.StatusCode.INVALID_ARGUMENT),
        ("exhausted", grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("precondition", grpc.StatusCode.FAILED_PRECONDITION),
        ("unavailable", grpc.StatusCode.UNAVAILABLE),
        ("deadline", grpc.StatusCode.DEADLINE_EXCEEDED),
        ("cancelled", grpc.StatusCode.CANCELLED),
        ("bug", grpc.StatusCode.INTERNAL),
    ],
)
def test_errors_map_to_statuses_with_details(harness, kind: str, code: grpc.StatusCode) -> None:
    client, _, _ = harness
    with pytest.raises(grpc.RpcError) as caught:
        client.fail(wrappers_pb2.StringValue(value=kind), timeout=5)
    assert caught.value.code() == code
    status = rpc_status.from_call(caught.value)
    assert status is not None and status.code == code.value[0]
    infos = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    assert len(infos) == 1
    info = error_details_pb2.ErrorInfo()
    infos[0].Unpack(info)
    assert info.metadata["stage"] == "harness"


def test_invalid_argument_carries_every_field_violation(harness) -> None:
    client, _, _ = harness
    with pytest.raises(grpc.RpcError) as caught:
        client.fail(wrappers_pb2.StringValue(value="invalid"), timeout=5)
    assert field_violations(caught.value) == [
        FieldViolation("lyrics", "line 3: nothing to sing"),
        FieldViolation("steps", "must be in 2..200"),
    ]


def test_resource_exhausted_carries_retry_info(harness) -> None:
    client, _, _ = harness
    with pytest.raises(grpc.RpcError) as caught:
        client.fail(wrappers_pb2.StringValue(value="exhausted"), timeout=5)
    assert retry_delay(caught.value) == pytest.approx(2.5)


def test_overload_is_refused_at_once_with_retry_info() -> None:
    engine = HarnessEngine()
    config = ServerConfig(port=0, max_concurrent=1, max_queue=1, retry_after_s=3.0, drain_delay_s=0)
    with running_stage(spec(lambda: engine), config) as server:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        client = HarnessClient(channel)
        running = client.sleep.future(wrappers_pb2.DoubleValue(value=3.0), timeout=10)
        engine.sleeps_started.wait(5)
        queued = client.sleep.future(wrappers_pb2.DoubleValue(value=0.0), timeout=10)
        waiting = time.monotonic() + 5
        while REGISTRY.get_sample_value("songsmith_queue_depth", {"stage": "harness"}) != 1:
            assert time.monotonic() < waiting, "the second call never queued"
            time.sleep(0.01)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as caught:
            client.sleep(wrappers_pb2.DoubleValue(value=0.0), timeout=10)
        assert time.monotonic() - started < 1.5, "refused only after the running call ended"
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert retry_delay(caught.value) == pytest.approx(3.0)
        assert running.result().value == "slept"
        assert queued.result().value == "slept"
        channel.close()


def test_cancellation_stops_the_handler(harness) -> None:
    client, engine, _ = harness
    call = client.sleep.future(wrappers_pb2.DoubleValue(value=30), timeout=60)
    assert engine.sleeps_started.wait(5)
    started = time.monotonic()
    call.cancel()
    while engine.sleeps_interrupted == 0 and time.monotonic() - started < 5:
        time.sleep(0.01)
    assert engine.sleeps_interrupted == 1
    assert time.monotonic() - started < 3.0, "the 30 s handler was not stopped promptly"


def test_deadline_reaches_the_handler(harness) -> None:
    client, engine, _ = harness
    with pytest.raises(grpc.RpcError) as caught:
        client.sleep(wrappers_pb2.DoubleValue(value=30), timeout=0.3)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    deadline = time.monotonic() + 2
    while engine.sleeps_interrupted == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.sleeps_interrupted == 1


def test_reflection_lists_the_services(harness) -> None:
    _, _, server = harness
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        responses = stub.ServerReflectionInfo(iter([request]))
        names = {s.name for r in responses for s in r.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


def test_metrics_count_calls_by_code(harness) -> None:
    client, _, _ = harness
    method = f"/{SERVICE}/Fail"

    def count(code: str) -> float:
        labels = {"stage": "harness", "method": method, "code": code}
        return REGISTRY.get_sample_value("songsmith_requests_total", labels) or 0.0

    before = count("INVALID_ARGUMENT")
    with pytest.raises(grpc.RpcError):
        client.fail(wrappers_pb2.StringValue(value="invalid"), timeout=5)
    assert count("INVALID_ARGUMENT") == before + 1
    assert REGISTRY.get_sample_value("songsmith_requests_in_flight", {"stage": "harness"}) == 0
    assert REGISTRY.get_sample_value("songsmith_received_bytes_total", {"stage": "harness"}) > 0


def test_metrics_count_bytes_both_ways_and_time_each_call(harness) -> None:
    client, _, _ = harness
    labels = {"stage": "harness"}
    timed = {"stage": "harness", "method": f"/{SERVICE}/Echo"}

    def sample(name: str, extra: dict[str, str] = labels) -> float:
        return REGISTRY.get_sample_value(name, extra) or 0.0

    received, sent = sample("songsmith_received_bytes_total"), sample("songsmith_sent_bytes_total")
    calls = sample("songsmith_request_duration_seconds_count", timed)
    array = np.zeros(3 * MAX_CHUNK_BYTES // 4, dtype=np.float32)
    assemble_tensor(client.echo(iter_tensor_chunks(array), timeout=30), array.nbytes)
    assert sample("songsmith_received_bytes_total") - received >= array.nbytes
    assert sample("songsmith_sent_bytes_total") - sent >= array.nbytes
    assert sample("songsmith_request_duration_seconds_count", timed) == calls + 1
    assert sample("songsmith_request_duration_seconds_sum", timed) > 0


@pytest.mark.parametrize("dtype", NUMPY_DTYPES, ids=lambda d: np.dtype(d).name)
@settings(max_examples=25, deadline=None)
@given(data=st.data(), copies=st.sampled_from([1, 3, 700]))
def test_random_tensors_echo_bit_exact_over_grpc(
    echo_client: HarnessClient, dtype, data, copies: int
) -> None:
    """Random shapes and values of every dtype, stacked `copies` times so some cross the 1 MiB chunk size."""
    drawn = data.draw(arrays(dtype))
    array = np.ascontiguousarray(np.broadcast_to(drawn, (copies, *drawn.shape)))
    echoed = assemble_tensor(echo_client.echo(iter_tensor_chunks(array), timeout=60), 64 << 20)
    assert same_bits(echoed, array)
    assembler = TensorAssembler(64 << 20)
    for raw in echo_client.echo_serialized(iter_serialized_chunks(array), timeout=60):
        assembler.add_serialized(raw)
    assert same_bits(assembler.result(), array)


@pytest.mark.parametrize("nbytes", [0, MAX_CHUNK_BYTES, MAX_CHUNK_BYTES + 1, 256 * MAX_CHUNK_BYTES])
def test_tensor_streams_round_trip_over_grpc(harness, nbytes: int) -> None:
    client, _, _ = harness
    array = np.random.default_rng(nbytes).integers(0, 2, nbytes, dtype=np.uint8).view(np.bool_)
    echoed = assemble_tensor(client.echo(iter_tensor_chunks(array), timeout=120), nbytes + 1)
    assert echoed.dtype == array.dtype and echoed.shape == array.shape
    assert echoed.tobytes() == array.tobytes()
    if nbytes <= 2 * MAX_CHUNK_BYTES:
        assembler = TensorAssembler(nbytes + 1)
        for raw in client.echo_serialized(iter_serialized_chunks(array), timeout=120):
            assert len(raw) <= MAX_CHUNK_BYTES + 64
            assembler.add_serialized(raw)
        assert assembler.result().tobytes() == array.tobytes()
