"""ModelInfoService, which every stage serves beside its own service: the loaded model's identity."""

from __future__ import annotations

import grpc

from services.runtime.model_info import SONG_INPUTS, ModelInfo
from services.runtime.slot import ModelSlot
from songsmith.v1 import model_pb2, model_pb2_grpc

SERVICE_NAME = model_pb2.DESCRIPTOR.services_by_name["ModelInfoService"].full_name
_INPUT_VALUES = {name: model_pb2.ModelInput.Value(f"MODEL_INPUT_{name.upper()}") for name in SONG_INPUTS}
_INPUT_NAMES = {value: name for name, value in _INPUT_VALUES.items()}


def model_info_to_proto(info: ModelInfo) -> model_pb2.ModelInfo:
    """The wire form of a ModelInfo."""
    return model_pb2.ModelInfo(
        name=info.name,
        family=info.family,
        revision=info.revision,
        families=list(info.families),
        sample_rate=info.sample_rate,
        frame_rate=info.frame_rate,
        channels=info.channels,
        inputs=[_INPUT_VALUES[name] for name in info.inputs],
        peak_normalize=info.peak_normalize,
    )


def model_info_from_proto(message: model_pb2.ModelInfo) -> ModelInfo:
    """A ModelInfo from its wire form (inputs this version does not know are left out)."""
    return ModelInfo(
        name=message.name,
        family=message.family,
        revision=message.revision,
        families=tuple(message.families),
        sample_rate=message.sample_rate,
        frame_rate=message.frame_rate,
        channels=message.channels,
        inputs=tuple(_INPUT_NAMES[value] for value in message.inputs if value in _INPUT_NAMES),
        peak_normalize=message.peak_normalize,
    )


class ModelInfoServicer(model_pb2_grpc.ModelInfoServiceServicer):
    """Answers GetModelInfo from the `info` of the engine held by the stage's ModelSlot."""

    def __init__(self, slot: ModelSlot) -> None:
        self._slot = slot

    def GetModelInfo(  # noqa: N802 - gRPC method name
        self, request: model_pb2.GetModelInfoRequest, context: grpc.ServicerContext
    ) -> model_pb2.GetModelInfoResponse:
        """The loaded model; UNAVAILABLE while loading, FAILED_PRECONDITION if loading failed."""
        return model_pb2.GetModelInfoResponse(model=model_info_to_proto(self._slot.get().info))
