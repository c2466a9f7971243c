import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from songsmith.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RankStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RANK_STATUS_UNSPECIFIED: _ClassVar[RankStatus]
    RANK_STATUS_RANKED: _ClassVar[RankStatus]
    RANK_STATUS_LOVED: _ClassVar[RankStatus]
    RANK_STATUS_GRAVEYARD: _ClassVar[RankStatus]
RANK_STATUS_UNSPECIFIED: RankStatus
RANK_STATUS_RANKED: RankStatus
RANK_STATUS_LOVED: RankStatus
RANK_STATUS_GRAVEYARD: RankStatus

class ChartFeatures(_message.Message):
    __slots__ = ("sr", "rank_status", "ln_ratio", "rc", "hb", "ln", "ett", "stamina_ett", "stamina", "stream_ett", "stream", "jumpstream_ett", "jumpstream", "handstream_ett", "handstream", "jackspeed_ett", "jackspeed", "chordjack_ett", "chordjack", "technical_ett", "technical")
    SR_FIELD_NUMBER: _ClassVar[int]
    RANK_STATUS_FIELD_NUMBER: _ClassVar[int]
    LN_RATIO_FIELD_NUMBER: _ClassVar[int]
    RC_FIELD_NUMBER: _ClassVar[int]
    HB_FIELD_NUMBER: _ClassVar[int]
    LN_FIELD_NUMBER: _ClassVar[int]
    ETT_FIELD_NUMBER: _ClassVar[int]
    STAMINA_ETT_FIELD_NUMBER: _ClassVar[int]
    STAMINA_FIELD_NUMBER: _ClassVar[int]
    STREAM_ETT_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    JUMPSTREAM_ETT_FIELD_NUMBER: _ClassVar[int]
    JUMPSTREAM_FIELD_NUMBER: _ClassVar[int]
    HANDSTREAM_ETT_FIELD_NUMBER: _ClassVar[int]
    HANDSTREAM_FIELD_NUMBER: _ClassVar[int]
    JACKSPEED_ETT_FIELD_NUMBER: _ClassVar[int]
    JACKSPEED_FIELD_NUMBER: _ClassVar[int]
    CHORDJACK_ETT_FIELD_NUMBER: _ClassVar[int]
    CHORDJACK_FIELD_NUMBER: _ClassVar[int]
    TECHNICAL_ETT_FIELD_NUMBER: _ClassVar[int]
    TECHNICAL_FIELD_NUMBER: _ClassVar[int]
    sr: float
    rank_status: RankStatus
    ln_ratio: float
    rc: bool
    hb: bool
    ln: bool
    ett: float
    stamina_ett: float
    stamina: bool
    stream_ett: float
    stream: bool
    jumpstream_ett: float
    jumpstream: bool
    handstream_ett: float
    handstream: bool
    jackspeed_ett: float
    jackspeed: bool
    chordjack_ett: float
    chordjack: bool
    technical_ett: float
    technical: bool
    def __init__(self, sr: _Optional[float] = ..., rank_status: _Optional[_Union[RankStatus, str]] = ..., ln_ratio: _Optional[float] = ..., rc: _Optional[bool] = ..., hb: _Optional[bool] = ..., ln: _Optional[bool] = ..., ett: _Optional[float] = ..., stamina_ett: _Optional[float] = ..., stamina: _Optional[bool] = ..., stream_ett: _Optional[float] = ..., stream: _Optional[bool] = ..., jumpstream_ett: _Optional[float] = ..., jumpstream: _Optional[bool] = ..., handstream_ett: _Optional[float] = ..., handstream: _Optional[bool] = ..., jackspeed_ett: _Optional[float] = ..., jackspeed: _Optional[bool] = ..., chordjack_ett: _Optional[float] = ..., chordjack: _Optional[bool] = ..., technical_ett: _Optional[float] = ..., technical: _Optional[bool] = ...) -> None: ...

class ChartOptions(_message.Message):
    __slots__ = ("job_id", "features", "seed", "steps", "guidance", "count", "snap_to_grid", "mini_jack_interval", "pcm_sample_rate", "title", "artist", "audio_filename")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SNAP_TO_GRID_FIELD_NUMBER: _ClassVar[int]
    MINI_JACK_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    PCM_SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    ARTIST_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FILENAME_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    features: ChartFeatures
    seed: int
    steps: int
    guidance: float
    count: int
    snap_to_grid: bool
    mini_jack_interval: _duration_pb2.Duration
    pcm_sample_rate: int
    title: str
    artist: str
    audio_filename: str
    def __init__(self, job_id: _Optional[str] = ..., features: _Optional[_Union[ChartFeatures, _Mapping]] = ..., seed: _Optional[int] = ..., steps: _Optional[int] = ..., guidance: _Optional[float] = ..., count: _Optional[int] = ..., snap_to_grid: _Optional[bool] = ..., mini_jack_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., pcm_sample_rate: _Optional[int] = ..., title: _Optional[str] = ..., artist: _Optional[str] = ..., audio_filename: _Optional[str] = ...) -> None: ...

class GenerateChartsRequest(_message.Message):
    __slots__ = ("options", "pcm", "encoded_audio")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    PCM_FIELD_NUMBER: _ClassVar[int]
    ENCODED_AUDIO_FIELD_NUMBER: _ClassVar[int]
    options: ChartOptions
    pcm: _tensor_pb2.TensorChunk
    encoded_audio: bytes
    def __init__(self, options: _Optional[_Union[ChartOptions, _Mapping]] = ..., pcm: _Optional[_Union[_tensor_pb2.TensorChunk, _Mapping]] = ..., encoded_audio: _Optional[bytes] = ...) -> None: ...

class ChartProgress(_message.Message):
    __slots__ = ("step", "total_steps")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    step: int
    total_steps: int
    def __init__(self, step: _Optional[int] = ..., total_steps: _Optional[int] = ...) -> None: ...

class HitObject(_message.Message):
    __slots__ = ("column", "start_ms", "end_ms")
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    START_MS_FIELD_NUMBER: _ClassVar[int]
    END_MS_FIELD_NUMBER: _ClassVar[int]
    column: int
    start_ms: int
    end_ms: int
    def __init__(self, column: _Optional[int] = ..., start_ms: _Optional[int] = ..., end_ms: _Optional[int] = ...) -> None: ...

class GeneratedChart(_message.Message):
    __slots__ = ("index", "seed", "keys", "hit_objects", "bpm", "offset_ms", "version", "file_name", "osu", "latents")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    HIT_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    BPM_FIELD_NUMBER: _ClassVar[int]
    OFFSET_MS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    OSU_FIELD_NUMBER: _ClassVar[int]
    LATENTS_FIELD_NUMBER: _ClassVar[int]
    index: int
    seed: int
    keys: int
    hit_objects: _containers.RepeatedCompositeFieldContainer[HitObject]
    bpm: float
    offset_ms: float
    version: str
    file_name: str
    osu: str
    latents: _tensor_pb2.Tensor
    def __init__(self, index: _Optional[int] = ..., seed: _Optional[int] = ..., keys: _Optional[int] = ..., hit_objects: _Optional[_Iterable[_Union[HitObject, _Mapping]]] = ..., bpm: _Optional[float] = ..., offset_ms: _Optional[float] = ..., version: _Optional[str] = ..., file_name: _Optional[str] = ..., osu: _Optional[str] = ..., latents: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class GenerateChartsResponse(_message.Message):
    __slots__ = ("progress", "chart")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    CHART_FIELD_NUMBER: _ClassVar[int]
    progress: ChartProgress
    chart: GeneratedChart
    def __init__(self, progress: _Optional[_Union[ChartProgress, _Mapping]] = ..., chart: _Optional[_Union[GeneratedChart, _Mapping]] = ...) -> None: ...
