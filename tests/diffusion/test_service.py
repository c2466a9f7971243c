"""The Diffusion service over real gRPC on 127.0.0.1: streaming, resume, errors, cancellation."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from services.diffusion.diffrhythm2.engine import DiffusionEngine
from services.diffusion.engine import GenerationRequest
from services.diffusion.server import DiffusionConfig, build_spec
from services.runtime.cancellation import CancellationToken
from services.runtime.codec import proto_to_numpy, tensor_to_proto
from services.runtime.interceptor import field_violations
from services.runtime.server import StageSpec
from songsmith.v1 import diffusion_pb2, diffusion_pb2_grpc, model_pb2, model_pb2_grpc
from tests.helpers import running_stage


class WatchedEngine(DiffusionEngine):
    """The real engine, noting when a song's iterator stops and the token it was given."""

    def __init__(self, engine: DiffusionEngine) -> None:
        super().__init__(engine.model, engine.max_frames_cap, engine.info)
        self.stopped = threading.Event()
        self.tokens: list = []

    def generate(self, request: GenerationRequest, token: CancellationToken | None = None) -> Iterator:
        blocks = super().generate(request, token)
        self.tokens.append(token)

        def watched() -> Iterator:
            try:
                yield from blocks
            finally:
                self.stopped.set()

        return watched()


@pytest.fixture(scope="module")
def served(reference_model_dir: Path):
    """A loaded diffusion server over the tiny reference model, a stub for it, and its engine."""
    config = DiffusionConfig(port=0, drain_delay_s=0, model_dir=str(reference_model_dir), max_frames_cap=3000)
    base = build_spec(config)
    holder: dict = {}

    def load() -> WatchedEngine:
        holder["engine"] = WatchedEngine(base.load())
        return holder["engine"]

    spec = StageSpec(base.name, base.service_name, load, base.register)
    with running_stage(spec, config) as server:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        yield diffusion_pb2_grpc.DiffusionServiceStub(channel), holder["engine"], channel
        channel.close()


def _request(case: dict, **changes) -> diffusion_pb2.GenerateLatentsRequest:
    fields = {
        "job_id": "test-song",
        "token_ids": tensor_to_proto(np.array(case["tokens"], np.int64)),
        "style": tensor_to_proto(case["style_vector"]),
        "seed": case["seed"],
        "steps": case["steps"],
        "cfg_strength": case["cfg_strength"],
        "max_frames": case["max_frames"],
        **changes,
    }
    return diffusion_pb2.GenerateLatentsRequest(**fields)


def _blocks(call) -> list[diffusion_pb2.LatentBlock]:
    replies = list(call)
    assert all(reply.HasField("block") for reply in replies)
    return [reply.block for reply in replies]


def test_streamed_blocks_match_engine_and_reference(served, reference_blocks: list, case) -> None:
    stub, engine, _ = served
    streamed = _blocks(stub.GenerateLatents(_request(case), timeout=60))
    assert [b.index for b in streamed] == [0, 1, 2]
    assert [b.final for b in streamed] == [False, False, True]
    assert [b.max_blocks for b in streamed] == [3, 3, 3]
    assert [b.frames_done for b in streamed] == [10, 20, 30]
    assert {b.model_revision for b in streamed} == {engine.info.revision}
    for message, block in zip(streamed, reference_blocks, strict=True):
        assert np.array_equal(proto_to_numpy(message.frames), block.latents)
    song = np.concatenate([proto_to_numpy(b.frames) for b in streamed])
    assert np.abs(song - case["latents"]).max() <= 1e-3


def test_defaults_apply_when_steps_and_guidance_are_absent(served, reference_engine, case) -> None:
    stub, *_ = served
    request = _request(case, steps=0, max_frames=10)
    request.ClearField("cfg_strength")
    (block,) = _blocks(stub.GenerateLatents(request, timeout=60))
    (local,) = reference_engine.sample(
        np.array(case["tokens"]),
        case["style_vector"],
        seed=case["seed"],
        steps=16,
        cfg_strength=2.0,
        max_frames=10,
    )
    assert np.array_equal(proto_to_numpy(block.frames), local.latents)


def test_resume_from_streamed_prefix(served, case) -> None:
    stub, *_ = served
    whole = _blocks(stub.GenerateLatents(_request(case, max_frames=50), timeout=60))
    rest = _blocks(stub.GenerateLatents(_request(case, max_frames=50, prefix=whole[:2]), timeout=60))
    assert [b.index for b in rest] == [2, 3, 4]
    for resumed, original in zip(rest, whole[2:], strict=True):
        assert resumed == original


BAD_REQUESTS = {
    "token_ids": {"token_ids": tensor_to_proto(np.array([5, 1001], np.int64))},
    "style": {"style": tensor_to_proto(np.zeros(256, np.float32))},
    "steps": {"steps": 201},
    "cfg_strength": {"cfg_strength": 20.5},
    "max_frames": {"max_frames": 3001},
    "prefix[0].index": {"prefix": [diffusion_pb2.LatentBlock(index=1)]},
}


@pytest.mark.parametrize("field", BAD_REQUESTS)
def test_invalid_argument_names_the_field(served, case, field: str) -> None:
    stub, *_ = served
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.GenerateLatents(_request(case, **BAD_REQUESTS[field]), timeout=30))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(caught.value)] == [field]


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("style", lambda r: r.style.CopyFrom(tensor_to_proto(np.full(512, np.nan, np.float32)))),
        ("steps", lambda r: setattr(r, "steps", 1)),
        ("max_frames", lambda r: setattr(r, "max_frames", 3001)),
        ("token_ids", lambda r: r.ClearField("token_ids")),
        ("token_ids", lambda r: setattr(r.token_ids, "data", b"\x00" * 3)),
    ],
)
def test_more_invalid_arguments(served, case, field: str, change) -> None:
    stub, *_ = served
    request = _request(case)
    change(request)
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.GenerateLatents(request, timeout=30))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(caught.value)] == [field]


def test_client_cancel_stops_sampling(served, case) -> None:
    stub, engine, _ = served
    engine.stopped.clear()
    call = stub.GenerateLatents(_request(case, steps=200, max_frames=3000), timeout=120)
    first = next(call).block
    assert first.index == 0 and not first.final
    call.cancel()
    assert engine.stopped.wait(10), "sampling went on after the client cancelled"
    assert engine.tokens[-1].cancelled


def test_deadline_stops_sampling(served, case) -> None:
    stub, engine, _ = served
    engine.stopped.clear()
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.GenerateLatents(_request(case, steps=200, max_frames=3000), timeout=1.0))
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert engine.stopped.wait(10)


def test_empty_model_dir_is_failed_precondition(tmp_path: Path, case) -> None:
    config = DiffusionConfig(port=0, drain_delay_s=0, model_dir=str(tmp_path))
    with (
        running_stage(build_spec(config), config) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        list(diffusion_pb2_grpc.DiffusionServiceStub(channel).GenerateLatents(_request(case), timeout=30))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "model.safetensors" in caught.value.details()


def test_a_prefix_of_another_revision_is_not_continued(served, case) -> None:
    stub, engine, _ = served
    whole = _blocks(stub.GenerateLatents(_request(case, max_frames=50), timeout=60))
    same = _request(case, max_frames=50, prefix=whole[:2], prefix_revision=engine.info.revision)
    assert [b.index for b in _blocks(stub.GenerateLatents(same, timeout=60))] == [2, 3, 4]
    other = _request(case, max_frames=50, prefix=whole[:2], prefix_revision="0" * 64)
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.GenerateLatents(other, timeout=30))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "revision 000000000000" in caught.value.details()


def test_options_of_another_family_are_invalid(served, case) -> None:
    stub, *_ = served
    request = _request(case)
    request.musicgen.top_k = 5
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.GenerateLatents(request, timeout=30))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(caught.value)] == ["musicgen"]


def test_model_info_names_the_model_and_its_weights(served, reference_model_dir: Path) -> None:
    *_, channel = served
    reply = model_pb2_grpc.ModelInfoServiceStub(channel).GetModelInfo(
        model_pb2.GetModelInfoRequest(), timeout=10
    )
    weights = hashlib.sha256((reference_model_dir / "model.safetensors").read_bytes()).hexdigest()
    assert (reply.model.name, reply.model.family, reply.model.revision) == (
        reference_model_dir.name,
        "diffrhythm2",
        weights,
    )
    assert reply.model.frame_rate == 5.0
    assert list(reply.model.inputs) == [
        model_pb2.MODEL_INPUT_LYRICS,
        model_pb2.MODEL_INPUT_STYLE_TEXT,
        model_pb2.MODEL_INPUT_STYLE_AUDIO,
    ]
