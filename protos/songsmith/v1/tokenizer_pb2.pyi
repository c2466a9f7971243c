from songsmith.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LineKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LINE_KIND_UNSPECIFIED: _ClassVar[LineKind]
    LINE_KIND_TAG: _ClassVar[LineKind]
    LINE_KIND_LYRIC: _ClassVar[LineKind]
LINE_KIND_UNSPECIFIED: LineKind
LINE_KIND_TAG: LineKind
LINE_KIND_LYRIC: LineKind

class TokenizeRequest(_message.Message):
    __slots__ = ("lyrics", "job_id", "family", "seconds")
    LYRICS_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    lyrics: str
    job_id: str
    family: str
    seconds: float
    def __init__(self, lyrics: _Optional[str] = ..., job_id: _Optional[str] = ..., family: _Optional[str] = ..., seconds: _Optional[float] = ...) -> None: ...

class TokenizedLine(_message.Message):
    __slots__ = ("number", "text", "kind", "phonemes", "tokens", "timestamp_seconds")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PHONEMES_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    number: int
    text: str
    kind: LineKind
    phonemes: str
    tokens: _containers.RepeatedScalarFieldContainer[int]
    timestamp_seconds: float
    def __init__(self, number: _Optional[int] = ..., text: _Optional[str] = ..., kind: _Optional[_Union[LineKind, str]] = ..., phonemes: _Optional[str] = ..., tokens: _Optional[_Iterable[int]] = ..., timestamp_seconds: _Optional[float] = ...) -> None: ...

class TokenizeResponse(_message.Message):
    __slots__ = ("token_ids", "lines", "warnings")
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    token_ids: _tensor_pb2.Tensor
    lines: _containers.RepeatedCompositeFieldContainer[TokenizedLine]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, token_ids: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., lines: _Optional[_Iterable[_Union[TokenizedLine, _Mapping]]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...
