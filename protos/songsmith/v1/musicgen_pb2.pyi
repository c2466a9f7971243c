from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class MusicGenOptions(_message.Message):
    __slots__ = ("greedy", "top_k", "top_p", "temperature")
    GREEDY_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    greedy: bool
    top_k: int
    top_p: float
    temperature: float
    def __init__(self, greedy: _Optional[bool] = ..., top_k: _Optional[int] = ..., top_p: _Optional[float] = ..., temperature: _Optional[float] = ...) -> None: ...
