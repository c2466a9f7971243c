from songsmith.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GenerateLatentsRequest(_message.Message):
    __slots__ = ("job_id", "token_ids", "style", "seed", "steps", "cfg_strength", "max_frames", "prefix")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    STYLE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CFG_STRENGTH_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAMES_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    token_ids: _tensor_pb2.Tensor
    style: _tensor_pb2.Tensor
    seed: int
    steps: int
    cfg_strength: float
    max_frames: int
    prefix: _containers.RepeatedCompositeFieldContainer[LatentBlock]
    def __init__(self, job_id: _Optional[str] = ..., token_ids: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., style: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., seed: _Optional[int] = ..., steps: _Optional[int] = ..., cfg_strength: _Optional[float] = ..., max_frames: _Optional[int] = ..., prefix: _Optional[_Iterable[_Union[LatentBlock, _Mapping]]] = ...) -> None: ...

class LatentBlock(_message.Message):
    __slots__ = ("index", "latents", "final", "max_blocks", "seconds_generated")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LATENTS_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    MAX_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_GENERATED_FIELD_NUMBER: _ClassVar[int]
    index: int
    latents: _tensor_pb2.Tensor
    final: bool
    max_blocks: int
    seconds_generated: float
    def __init__(self, index: _Optional[int] = ..., latents: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., final: _Optional[bool] = ..., max_blocks: _Optional[int] = ..., seconds_generated: _Optional[float] = ...) -> None: ...
