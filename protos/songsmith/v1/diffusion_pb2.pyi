from songsmith.v1 import diffrhythm1_pb2 as _diffrhythm1_pb2
from songsmith.v1 import musicgen_pb2 as _musicgen_pb2
from songsmith.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GenerateLatentsRequest(_message.Message):
    __slots__ = ("job_id", "token_ids", "style", "seed", "steps", "cfg_strength", "max_frames", "prefix", "melody", "seconds", "reference", "prefix_revision", "diffrhythm1", "musicgen")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    STYLE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CFG_STRENGTH_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAMES_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    MELODY_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    PREFIX_REVISION_FIELD_NUMBER: _ClassVar[int]
    DIFFRHYTHM1_FIELD_NUMBER: _ClassVar[int]
    MUSICGEN_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    token_ids: _tensor_pb2.Tensor
    style: _tensor_pb2.Tensor
    seed: int
    steps: int
    cfg_strength: float
    max_frames: int
    prefix: _containers.RepeatedCompositeFieldContainer[LatentBlock]
    melody: _tensor_pb2.Tensor
    seconds: float
    reference: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.Tensor]
    prefix_revision: str
    diffrhythm1: _diffrhythm1_pb2.DiffRhythm1Options
    musicgen: _musicgen_pb2.MusicGenOptions
    def __init__(self, job_id: _Optional[str] = ..., token_ids: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., style: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., seed: _Optional[int] = ..., steps: _Optional[int] = ..., cfg_strength: _Optional[float] = ..., max_frames: _Optional[int] = ..., prefix: _Optional[_Iterable[_Union[LatentBlock, _Mapping]]] = ..., melody: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., seconds: _Optional[float] = ..., reference: _Optional[_Iterable[_Union[_tensor_pb2.Tensor, _Mapping]]] = ..., prefix_revision: _Optional[str] = ..., diffrhythm1: _Optional[_Union[_diffrhythm1_pb2.DiffRhythm1Options, _Mapping]] = ..., musicgen: _Optional[_Union[_musicgen_pb2.MusicGenOptions, _Mapping]] = ...) -> None: ...

class LatentBlock(_message.Message):
    __slots__ = ("index", "frames", "final", "max_blocks", "frames_done", "model_revision", "candidate")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    MAX_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DONE_FIELD_NUMBER: _ClassVar[int]
    MODEL_REVISION_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    index: int
    frames: _tensor_pb2.Tensor
    final: bool
    max_blocks: int
    frames_done: int
    model_revision: str
    candidate: int
    def __init__(self, index: _Optional[int] = ..., frames: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., final: _Optional[bool] = ..., max_blocks: _Optional[int] = ..., frames_done: _Optional[int] = ..., model_revision: _Optional[str] = ..., candidate: _Optional[int] = ...) -> None: ...

class GenerationProgress(_message.Message):
    __slots__ = ("step", "total_steps")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    step: int
    total_steps: int
    def __init__(self, step: _Optional[int] = ..., total_steps: _Optional[int] = ...) -> None: ...

class GenerateLatentsResponse(_message.Message):
    __slots__ = ("block", "progress")
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    block: LatentBlock
    progress: GenerationProgress
    def __init__(self, block: _Optional[_Union[LatentBlock, _Mapping]] = ..., progress: _Optional[_Union[GenerationProgress, _Mapping]] = ...) -> None: ...
