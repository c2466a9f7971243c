from songsmith.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DecodeRequest(_message.Message):
    __slots__ = ("job_id", "block_index", "frames", "final", "start_sample")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    BLOCK_INDEX_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    START_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    block_index: int
    frames: _tensor_pb2.Tensor
    final: bool
    start_sample: int
    def __init__(self, job_id: _Optional[str] = ..., block_index: _Optional[int] = ..., frames: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., final: _Optional[bool] = ..., start_sample: _Optional[int] = ...) -> None: ...

class DecodeResponse(_message.Message):
    __slots__ = ("sample_offset", "samples", "sample_rate", "final")
    SAMPLE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    sample_offset: int
    samples: _tensor_pb2.Tensor
    sample_rate: int
    final: bool
    def __init__(self, sample_offset: _Optional[int] = ..., samples: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., sample_rate: _Optional[int] = ..., final: _Optional[bool] = ...) -> None: ...

class EncodeOptions(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class EncodeRequest(_message.Message):
    __slots__ = ("options", "data")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    options: EncodeOptions
    data: bytes
    def __init__(self, options: _Optional[_Union[EncodeOptions, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class EncodeResponse(_message.Message):
    __slots__ = ("frames",)
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    frames: _tensor_pb2.Tensor
    def __init__(self, frames: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...
