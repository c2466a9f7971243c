from songsmith.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AudioCrop(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIO_CROP_UNSPECIFIED: _ClassVar[AudioCrop]
    AUDIO_CROP_WHOLE: _ClassVar[AudioCrop]
    AUDIO_CROP_RANDOM_10S: _ClassVar[AudioCrop]
    AUDIO_CROP_MIDDLE_10S: _ClassVar[AudioCrop]
AUDIO_CROP_UNSPECIFIED: AudioCrop
AUDIO_CROP_WHOLE: AudioCrop
AUDIO_CROP_RANDOM_10S: AudioCrop
AUDIO_CROP_MIDDLE_10S: AudioCrop

class EmbedTextRequest(_message.Message):
    __slots__ = ("prompt", "job_id")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    job_id: str
    def __init__(self, prompt: _Optional[str] = ..., job_id: _Optional[str] = ...) -> None: ...

class AudioEmbedOptions(_message.Message):
    __slots__ = ("crop", "seed", "job_id")
    CROP_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    crop: AudioCrop
    seed: int
    job_id: str
    def __init__(self, crop: _Optional[_Union[AudioCrop, str]] = ..., seed: _Optional[int] = ..., job_id: _Optional[str] = ...) -> None: ...

class EmbedAudioRequest(_message.Message):
    __slots__ = ("options", "data")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    options: AudioEmbedOptions
    data: bytes
    def __init__(self, options: _Optional[_Union[AudioEmbedOptions, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class EmbedTextResponse(_message.Message):
    __slots__ = ("embedding", "cached")
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    embedding: _tensor_pb2.Tensor
    cached: bool
    def __init__(self, embedding: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., cached: _Optional[bool] = ...) -> None: ...

class EmbedAudioResponse(_message.Message):
    __slots__ = ("embedding", "clips", "audio_seconds")
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    CLIPS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SECONDS_FIELD_NUMBER: _ClassVar[int]
    embedding: _tensor_pb2.Tensor
    clips: int
    audio_seconds: float
    def __init__(self, embedding: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., clips: _Optional[int] = ..., audio_seconds: _Optional[float] = ...) -> None: ...
