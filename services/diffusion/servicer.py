"""The DiffusionService servicer: decode the request, run the hosted engine, stream what it yields.

Family-agnostic: the request's tensors and typed parameters go into a GenerationRequest, the
family's own options are read by its registry entry, and every block or progress event the engine
yields goes out as it lands.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np

from services.diffusion.engine import (
    GeneratedBlock,
    GenerationEngine,
    GenerationProgress,
    GenerationRequest,
    check_prefix_revision,
)
from services.diffusion.families import GENERATION_FAMILIES
from services.runtime.calls import call_token
from services.runtime.codec import proto_to_numpy, tensor_to_proto
from services.runtime.errors import InvalidArgumentError
from services.runtime.logs import job_scope
from services.runtime.slot import ModelSlot
from songsmith.v1 import diffusion_pb2, diffusion_pb2_grpc


def optional_tensor(request: diffusion_pb2.GenerateLatentsRequest, field: str) -> np.ndarray | None:
    """The request's tensor `field`, or None when it is not set."""
    return proto_to_numpy(getattr(request, field), field) if request.HasField(field) else None


def decode_prefix(blocks: list[diffusion_pb2.LatentBlock]) -> list[np.ndarray]:
    """The prefix blocks' frames, in order; each must carry its position as `index`."""
    decoded = []
    for position, block in enumerate(blocks):
        if block.index != position:
            raise InvalidArgumentError(f"prefix[{position}].index", f"must be {position}, got {block.index}")
        decoded.append(proto_to_numpy(block.frames, f"prefix[{position}].frames"))
    return decoded


def decode_reference(pieces: list) -> np.ndarray | None:
    """The reference frames, reassembled along the frame axis (None when none were sent)."""
    if not pieces:
        return None
    arrays = [proto_to_numpy(piece, f"reference[{index}]") for index, piece in enumerate(pieces)]
    if len({array.shape[1:] for array in arrays}) != 1 or arrays[0].ndim != 2:
        raise InvalidArgumentError("reference", "pieces must be [frames, channels] with the same channels")
    return np.concatenate(arrays)


def generation_request(request: diffusion_pb2.GenerateLatentsRequest, family: str) -> GenerationRequest:
    """The engine's request for a wire request to a stage hosting `family`."""
    return GenerationRequest(
        job_id=request.job_id,
        tokens=optional_tensor(request, "token_ids"),
        style=optional_tensor(request, "style"),
        melody=optional_tensor(request, "melody"),
        seed=request.seed,
        steps=request.steps,
        cfg_strength=request.cfg_strength if request.HasField("cfg_strength") else None,
        max_frames=request.max_frames,
        seconds=request.seconds,
        prefix=decode_prefix(list(request.prefix)),
        reference=decode_reference(list(request.reference)),
        options=GENERATION_FAMILIES.options(family, request),
    )


def to_response(
    event: GeneratedBlock | GenerationProgress, revision: str
) -> diffusion_pb2.GenerateLatentsResponse:
    """The wire message for one engine event of a model of `revision`."""
    if isinstance(event, GenerationProgress):
        return diffusion_pb2.GenerateLatentsResponse(
            progress=diffusion_pb2.GenerationProgress(step=event.step, total_steps=event.total_steps)
        )
    return diffusion_pb2.GenerateLatentsResponse(
        block=diffusion_pb2.LatentBlock(
            index=event.index,
            frames=tensor_to_proto(event.frames),
            final=event.final,
            max_blocks=event.max_blocks,
            frames_done=event.frames_done,
            model_revision=revision,
            candidate=event.candidate,
        )
    )


class DiffusionServicer(diffusion_pb2_grpc.DiffusionServiceServicer):
    """Serves GenerateLatents from the engine held by the stage's ModelSlot."""

    def __init__(self, slot: ModelSlot) -> None:
        self._slot = slot

    def GenerateLatents(  # noqa: N802 - gRPC method name
        self, request: diffusion_pb2.GenerateLatentsRequest, context: grpc.ServicerContext
    ) -> Iterator[diffusion_pb2.GenerateLatentsResponse]:
        """Stream the song's blocks after the prefix; cancellation and deadline stop it at a step."""
        engine: GenerationEngine = self._slot.get()
        with job_scope(request.job_id):
            song = generation_request(request, engine.info.family)
            check_prefix_revision(engine.info, song.prefix, request.prefix_revision)
            for event in engine.generate(song, call_token(context)):
                yield to_response(event, engine.info.revision)
