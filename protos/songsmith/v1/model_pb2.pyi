from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelInput(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_INPUT_UNSPECIFIED: _ClassVar[ModelInput]
    MODEL_INPUT_LYRICS: _ClassVar[ModelInput]
    MODEL_INPUT_STYLE_TEXT: _ClassVar[ModelInput]
    MODEL_INPUT_STYLE_AUDIO: _ClassVar[ModelInput]
    MODEL_INPUT_MELODY_AUDIO: _ClassVar[ModelInput]
    MODEL_INPUT_REFERENCE_AUDIO: _ClassVar[ModelInput]
MODEL_INPUT_UNSPECIFIED: ModelInput
MODEL_INPUT_LYRICS: ModelInput
MODEL_INPUT_STYLE_TEXT: ModelInput
MODEL_INPUT_STYLE_AUDIO: ModelInput
MODEL_INPUT_MELODY_AUDIO: ModelInput
MODEL_INPUT_REFERENCE_AUDIO: ModelInput

class ModelInfo(_message.Message):
    __slots__ = ("name", "family", "revision", "families", "sample_rate", "frame_rate", "channels", "inputs", "peak_normalize")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    FAMILIES_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    FRAME_RATE_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    PEAK_NORMALIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    family: str
    revision: str
    families: _containers.RepeatedScalarFieldContainer[str]
    sample_rate: int
    frame_rate: float
    channels: int
    inputs: _containers.RepeatedScalarFieldContainer[ModelInput]
    peak_normalize: bool
    def __init__(self, name: _Optional[str] = ..., family: _Optional[str] = ..., revision: _Optional[str] = ..., families: _Optional[_Iterable[str]] = ..., sample_rate: _Optional[int] = ..., frame_rate: _Optional[float] = ..., channels: _Optional[int] = ..., inputs: _Optional[_Iterable[_Union[ModelInput, str]]] = ..., peak_normalize: _Optional[bool] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetModelInfoResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: ModelInfo
    def __init__(self, model: _Optional[_Union[ModelInfo, _Mapping]] = ...) -> None: ...
