"""The Diffusion gRPC servicer: decode the request, run the engine, stream each block as it lands."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np

from services.diffusion.engine import GenerationEngine, GenerationRequest
from services.runtime.calls import call_token
from services.runtime.codec import proto_to_numpy, tensor_to_proto
from services.runtime.errors import InvalidArgumentError
from services.runtime.server import ModelSlot
from songsmith.v1 import diffusion_pb2, diffusion_pb2_grpc


def _required_tensor(request: diffusion_pb2.GenerateLatentsRequest, field: str) -> np.ndarray:
    if not request.HasField(field):
        raise InvalidArgumentError(field, "is required")
    return proto_to_numpy(getattr(request, field), field)


def decode_prefix(blocks: list[diffusion_pb2.LatentBlock]) -> list[np.ndarray]:
    """The prefix blocks' latents, in order; each must carry its position as `index`."""
    decoded = []
    for position, block in enumerate(blocks):
        if block.index != position:
            raise InvalidArgumentError(f"prefix[{position}].index", f"must be {position}, got {block.index}")
        decoded.append(proto_to_numpy(block.latents, f"prefix[{position}].latents"))
    return decoded


class DiffusionServicer(diffusion_pb2_grpc.DiffusionServicer):
    """Serves GenerateLatents from the engine held by the stage's ModelSlot."""

    def __init__(self, slot: ModelSlot) -> None:
        self._slot = slot

    def GenerateLatents(  # noqa: N802 - gRPC method name
        self, request: diffusion_pb2.GenerateLatentsRequest, context: grpc.ServicerContext
    ) -> Iterator[diffusion_pb2.LatentBlock]:
        """Stream the song's blocks after the prefix; cancellation and deadline stop it at an ODE step."""
        engine: GenerationEngine = self._slot.get()
        song = GenerationRequest(
            job_id=request.job_id,
            tokens=_required_tensor(request, "token_ids"),
            style=_required_tensor(request, "style"),
            seed=request.seed,
            steps=request.steps,
            cfg_strength=request.cfg_strength if request.HasField("cfg_strength") else None,
            max_frames=request.max_frames,
            prefix=decode_prefix(list(request.prefix)),
        )
        for block in engine.generate(song, call_token(context)):
            yield diffusion_pb2.LatentBlock(
                index=block.index,
                latents=tensor_to_proto(block.frames),
                final=block.final,
                max_blocks=block.max_blocks,
                seconds_generated=block.frames_done / engine.info.frame_rate,
            )
