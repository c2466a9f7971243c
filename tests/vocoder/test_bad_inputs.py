"""Bad latents sent to the Vocoder service over real gRPC are INVALID_ARGUMENT naming the field, never
INTERNAL, and a decoder that produces NaN fails the call instead of streaming it (issue 18, item 8)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

from services.runtime.codec import tensor_to_proto
from services.runtime.interceptor import field_violations
from services.runtime.server import StageSpec
from services.vocoder.diffrhythm2.engine import VocoderEngine
from services.vocoder.server import VocoderConfig, build_spec
from songsmith.v1 import tensor_pb2, vocoder_pb2, vocoder_pb2_grpc
from tests.helpers import running_stage

FLOAT32 = tensor_pb2.DATA_TYPE_FLOAT32


@contextmanager
def _serving(spec: StageSpec, config: VocoderConfig) -> Iterator[vocoder_pb2_grpc.VocoderServiceStub]:
    """A stub to a real vocoder stage on 127.0.0.1 built from `spec`."""
    with (
        running_stage(spec, config) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield vocoder_pb2_grpc.VocoderServiceStub(channel)


@pytest.fixture(scope="module")
def stub(fixture_dir: Path) -> Iterator[vocoder_pb2_grpc.VocoderServiceStub]:
    """A vocoder stage loaded (and warmed up) from the fixture decoder."""
    config = VocoderConfig(port=0, drain_delay_s=0, model_dir=str(fixture_dir), max_frames_cap=60)
    with _serving(build_spec(config), config) as opened:
        yield opened


def _one_block(latents: tensor_pb2.Tensor) -> Iterator[vocoder_pb2.DecodeRequest]:
    yield vocoder_pb2.DecodeRequest(job_id="bad-input", block_index=0, frames=latents, final=True)


BAD = {
    "latents of 70 dimensions": tensor_pb2.Tensor(
        dtype=FLOAT32, shape=[1] * 70, data=np.ones(1, np.float32).tobytes()
    ),
    "latents of shape [0, 2^62]": tensor_pb2.Tensor(dtype=FLOAT32, shape=[0, 1 << 62], data=b""),
    "latents of 1e30": tensor_to_proto(np.full((10, 64), 1e30, np.float32)),
    "latents of -1e4": tensor_to_proto(np.full((10, 64), -1e4, np.float32)),
}


@pytest.mark.parametrize("case_name", BAD)
def test_bad_latents_are_invalid_argument(stub, case_name: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Decode(_one_block(BAD[case_name]), timeout=60))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert [v.field for v in field_violations(caught.value)] == ["frames"]


def test_a_decoder_that_makes_nan_fails_the_call_instead_of_streaming_it(
    fixture_dir: Path, tmp_path: Path
) -> None:
    """A decoder.bin whose last convolution holds a NaN (loaded without the warm-up, which would
    already refuse it): the first window is non-finite, and the call ends INTERNAL without PCM."""
    folder = tmp_path / "nan-decoder"
    folder.mkdir()
    shutil.copy(fixture_dir / "decoder.json", folder / "decoder.json")
    state = torch.load(fixture_dir / "decoder.bin", weights_only=True)["generator"]
    state["conv_post.weight_v"][0, 0, 0] = float("nan")
    torch.save({"generator": state}, folder / "decoder.bin")
    config = VocoderConfig(port=0, drain_delay_s=0, model_dir=str(folder))
    base = build_spec(config)
    spec = StageSpec(base.name, base.service_name, lambda: VocoderEngine.load(folder), base.register)
    received: list[vocoder_pb2.PcmChunk] = []
    latents = tensor_to_proto(np.random.default_rng(0).standard_normal((20, 64)).astype(np.float32))
    with _serving(spec, config) as nan_stub, pytest.raises(grpc.RpcError) as caught:
        received.extend(nan_stub.Decode(_one_block(latents), timeout=60))
    assert received == []
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "NaN or infinite samples" in caught.value.details()
