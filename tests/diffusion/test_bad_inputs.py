"""Bad input to the Diffusion service over real gRPC is INVALID_ARGUMENT naming its field, never
INTERNAL, and a model that produces NaN fails the call instead of streaming it (issue 18, item 8).

"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from services.diffusion.diffrhythm2.engine import DiffusionEngine
from services.diffusion.server import DiffusionConfig, build_spec
from services.runtime.codec import tensor_to_proto
from services.runtime.interceptor import field_violations
from services.runtime.server import StageSpec
from songsmith.v1 import diffusion_pb2, diffusion_pb2_grpc, tensor_pb2
from tests.diffusion.conftest import FIXTURE_DIR
from tests.helpers import running_stage


@contextmanager
def _serving(spec: StageSpec, config: DiffusionConfig) -> Iterator[diffusion_pb2_grpc.DiffusionServiceStub]:
    """A stub to a real diffusion stage on 127.0.0.1 built from `spec`."""
    with (
        running_stage(spec, config) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield diffusion_pb2_grpc.DiffusionServiceStub(channel)


@pytest.fixture(scope="module")
def stub(reference_model_dir: Path) -> Iterator[diffusion_pb2_grpc.DiffusionServiceStub]:
    """A diffusion stage loaded (and warmed up) from the tiny reference model."""
    config = DiffusionConfig(port=0, drain_delay_s=0, model_dir=str(reference_model_dir))
    with _serving(build_spec(config), config) as opened:
        yield opened


def _request(case: dict, **changes) -> diffusion_pb2.GenerateLatentsRequest:
    fields = {
        "job_id": "bad-input",
        "token_ids": tensor_to_proto(np.array(case["tokens"], np.int64)),
        "style": tensor_to_proto(case["style_vector"]),
        "seed": case["seed"],
        "steps": 2,
        "max_frames": 10,
        **changes,
    }
    return diffusion_pb2.GenerateLatentsRequest(**fields)


def _raw(dtype: int, shape: list[int], data: bytes) -> tensor_pb2.Tensor:
    """A Tensor message as a client may build it by hand, shape and bytes unchecked."""
    return tensor_pb2.Tensor(dtype=dtype, shape=shape, data=data)


INT64, FLOAT32 = tensor_pb2.DATA_TYPE_INT64, tensor_pb2.DATA_TYPE_FLOAT32
ONE_INT64, ONE_FLOAT32 = np.ones(1, np.int64).tobytes(), np.ones(1, np.float32).tobytes()
BLOCK = np.zeros((10, 64), np.float32)
BAD = {
    "tokens of 100 dimensions": ("token_ids", {"token_ids": _raw(INT64, [1] * 100, ONE_INT64)}),
    "tokens of shape [0, 2^62]": ("token_ids", {"token_ids": _raw(INT64, [0, 1 << 62], b"")}),
    "style of 70 dimensions": ("style", {"style": _raw(FLOAT32, [1] * 70, ONE_FLOAT32)}),
    "style of 1e38": ("style", {"style": tensor_to_proto(np.full(512, 1e38, np.float32))}),
    "style of -1000": ("style", {"style": tensor_to_proto(np.full(512, -1e3, np.float32))}),
    "prefix latents of 1e30": (
        "prefix[0].frames",
        {"prefix": [diffusion_pb2.LatentBlock(index=0, frames=tensor_to_proto(BLOCK + 1e30))]},
    ),
    "prefix latents of 9 dimensions": (
        "prefix[0].frames",
        {"prefix": [diffusion_pb2.LatentBlock(index=0, frames=_raw(FLOAT32, [1] * 9, ONE_FLOAT32))]},
    ),
}


@pytest.mark.parametrize("case_name", BAD)
def test_bad_input_is_invalid_argument_naming_its_field(stub, case, case_name: str) -> None:
    field, changes = BAD[case_name]
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.GenerateLatents(_request(case, **changes, max_frames=30), timeout=30))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert [v.field for v in field_violations(caught.value)] == [field]


def test_the_stage_still_samples_after_bad_input(stub, case) -> None:
    blocks = [reply.block for reply in stub.GenerateLatents(_request(case), timeout=60)]
    assert [b.index for b in blocks] == [0] and blocks[0].final


def test_a_model_that_makes_nan_fails_the_call_instead_of_streaming_it(tmp_path: Path, case) -> None:
    """A checkpoint whose output projection holds a NaN (loaded without the warm-up, which would
    already refuse it): the first block is non-finite, and the call ends INTERNAL without a block."""
    folder = tmp_path / "nan-model"
    folder.mkdir()
    shutil.copy(FIXTURE_DIR / "config.json", folder / "config.json")
    weights = load_file(FIXTURE_DIR / "model.safetensors")
    weights["transformer.proj_out.weight"][0, 0] = float("nan")
    save_file(weights, folder / "model.safetensors")
    config = DiffusionConfig(port=0, drain_delay_s=0, model_dir=str(folder))
    base = build_spec(config)
    spec = StageSpec(base.name, base.service_name, lambda: DiffusionEngine.load(folder), base.register)
    received: list[diffusion_pb2.GenerateLatentsResponse] = []
    with _serving(spec, config) as nan_stub, pytest.raises(grpc.RpcError) as caught:
        received.extend(nan_stub.GenerateLatents(_request(case), timeout=60))
    assert received == []
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "NaN or infinite latents in block 0" in caught.value.details()
