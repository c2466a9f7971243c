from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EditSpan(_message.Message):
    __slots__ = ("start_seconds", "end_seconds")
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    start_seconds: float
    end_seconds: float
    def __init__(self, start_seconds: _Optional[float] = ..., end_seconds: _Optional[float] = ...) -> None: ...

class DiffRhythm1Options(_message.Message):
    __slots__ = ("edit_spans", "candidates", "keep_raw_level")
    EDIT_SPANS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    KEEP_RAW_LEVEL_FIELD_NUMBER: _ClassVar[int]
    edit_spans: _containers.RepeatedCompositeFieldContainer[EditSpan]
    candidates: int
    keep_raw_level: bool
    def __init__(self, edit_spans: _Optional[_Iterable[_Union[EditSpan, _Mapping]]] = ..., candidates: _Optional[int] = ..., keep_raw_level: _Optional[bool] = ...) -> None: ...
