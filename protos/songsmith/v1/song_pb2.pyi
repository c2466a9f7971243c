import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from songsmith.v1 import chart_pb2 as _chart_pb2
from songsmith.v1 import diffrhythm1_pb2 as _diffrhythm1_pb2
from songsmith.v1 import model_pb2 as _model_pb2
from songsmith.v1 import musicgen_pb2 as _musicgen_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AudioFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIO_FORMAT_UNSPECIFIED: _ClassVar[AudioFormat]
    AUDIO_FORMAT_MP3: _ClassVar[AudioFormat]
    AUDIO_FORMAT_WAV: _ClassVar[AudioFormat]
    AUDIO_FORMAT_FLAC: _ClassVar[AudioFormat]
    AUDIO_FORMAT_OGG: _ClassVar[AudioFormat]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
AUDIO_FORMAT_UNSPECIFIED: AudioFormat
AUDIO_FORMAT_MP3: AudioFormat
AUDIO_FORMAT_WAV: AudioFormat
AUDIO_FORMAT_FLAC: AudioFormat
AUDIO_FORMAT_OGG: AudioFormat
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState

class SongRequest(_message.Message):
    __slots__ = ("job_id", "lyrics", "style_prompt", "style_audio", "seed", "steps", "cfg_strength", "format", "stereo", "normalize_loudness", "target_lufs", "max_duration", "model", "reference_audio", "charts", "diffrhythm1", "musicgen")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LYRICS_FIELD_NUMBER: _ClassVar[int]
    STYLE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    STYLE_AUDIO_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CFG_STRENGTH_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    STEREO_FIELD_NUMBER: _ClassVar[int]
    NORMALIZE_LOUDNESS_FIELD_NUMBER: _ClassVar[int]
    TARGET_LUFS_FIELD_NUMBER: _ClassVar[int]
    MAX_DURATION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_AUDIO_FIELD_NUMBER: _ClassVar[int]
    CHARTS_FIELD_NUMBER: _ClassVar[int]
    DIFFRHYTHM1_FIELD_NUMBER: _ClassVar[int]
    MUSICGEN_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    lyrics: str
    style_prompt: str
    style_audio: bytes
    seed: int
    steps: int
    cfg_strength: float
    format: AudioFormat
    stereo: bool
    normalize_loudness: bool
    target_lufs: float
    max_duration: _duration_pb2.Duration
    model: str
    reference_audio: bytes
    charts: ChartRequest
    diffrhythm1: _diffrhythm1_pb2.DiffRhythm1Options
    musicgen: _musicgen_pb2.MusicGenOptions
    def __init__(self, job_id: _Optional[str] = ..., lyrics: _Optional[str] = ..., style_prompt: _Optional[str] = ..., style_audio: _Optional[bytes] = ..., seed: _Optional[int] = ..., steps: _Optional[int] = ..., cfg_strength: _Optional[float] = ..., format: _Optional[_Union[AudioFormat, str]] = ..., stereo: _Optional[bool] = ..., normalize_loudness: _Optional[bool] = ..., target_lufs: _Optional[float] = ..., max_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., model: _Optional[str] = ..., reference_audio: _Optional[bytes] = ..., charts: _Optional[_Union[ChartRequest, _Mapping]] = ..., diffrhythm1: _Optional[_Union[_diffrhythm1_pb2.DiffRhythm1Options, _Mapping]] = ..., musicgen: _Optional[_Union[_musicgen_pb2.MusicGenOptions, _Mapping]] = ...) -> None: ...

class ChartRequest(_message.Message):
    __slots__ = ("features", "count", "seed", "steps", "guidance", "title", "artist")
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    ARTIST_FIELD_NUMBER: _ClassVar[int]
    features: _chart_pb2.ChartFeatures
    count: int
    seed: int
    steps: int
    guidance: float
    title: str
    artist: str
    def __init__(self, features: _Optional[_Union[_chart_pb2.ChartFeatures, _Mapping]] = ..., count: _Optional[int] = ..., seed: _Optional[int] = ..., steps: _Optional[int] = ..., guidance: _Optional[float] = ..., title: _Optional[str] = ..., artist: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "state", "blocks_done", "max_blocks", "error", "result", "seed", "create_time", "update_time", "generated", "model")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_DONE_FIELD_NUMBER: _ClassVar[int]
    MAX_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    GENERATED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: JobState
    blocks_done: int
    max_blocks: int
    error: str
    result: SongSummary
    seed: int
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    generated: _duration_pb2.Duration
    model: str
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., blocks_done: _Optional[int] = ..., max_blocks: _Optional[int] = ..., error: _Optional[str] = ..., result: _Optional[_Union[SongSummary, _Mapping]] = ..., seed: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., generated: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., model: _Optional[str] = ...) -> None: ...

class SongSummary(_message.Message):
    __slots__ = ("sample_rate", "channels", "format", "size_bytes", "seed", "model", "duration", "stage_durations", "model_revision", "charts", "candidates")
    class StageDurationsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _duration_pb2.Duration
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    STAGE_DURATIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_REVISION_FIELD_NUMBER: _ClassVar[int]
    CHARTS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    sample_rate: int
    channels: int
    format: AudioFormat
    size_bytes: int
    seed: int
    model: str
    duration: _duration_pb2.Duration
    stage_durations: _containers.MessageMap[str, _duration_pb2.Duration]
    model_revision: str
    charts: ChartSet
    candidates: _containers.RepeatedCompositeFieldContainer[CandidateSong]
    def __init__(self, sample_rate: _Optional[int] = ..., channels: _Optional[int] = ..., format: _Optional[_Union[AudioFormat, str]] = ..., size_bytes: _Optional[int] = ..., seed: _Optional[int] = ..., model: _Optional[str] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., stage_durations: _Optional[_Mapping[str, _duration_pb2.Duration]] = ..., model_revision: _Optional[str] = ..., charts: _Optional[_Union[ChartSet, _Mapping]] = ..., candidates: _Optional[_Iterable[_Union[CandidateSong, _Mapping]]] = ...) -> None: ...

class ChartSet(_message.Message):
    __slots__ = ("osz_size_bytes", "osz_name", "model", "model_revision", "charts")
    OSZ_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    OSZ_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_REVISION_FIELD_NUMBER: _ClassVar[int]
    CHARTS_FIELD_NUMBER: _ClassVar[int]
    osz_size_bytes: int
    osz_name: str
    model: str
    model_revision: str
    charts: _containers.RepeatedCompositeFieldContainer[ChartSummary]
    def __init__(self, osz_size_bytes: _Optional[int] = ..., osz_name: _Optional[str] = ..., model: _Optional[str] = ..., model_revision: _Optional[str] = ..., charts: _Optional[_Iterable[_Union[ChartSummary, _Mapping]]] = ...) -> None: ...

class ChartSummary(_message.Message):
    __slots__ = ("file_name", "version", "seed", "hit_objects", "bpm", "offset")
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    HIT_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    BPM_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    file_name: str
    version: str
    seed: int
    hit_objects: int
    bpm: float
    offset: _duration_pb2.Duration
    def __init__(self, file_name: _Optional[str] = ..., version: _Optional[str] = ..., seed: _Optional[int] = ..., hit_objects: _Optional[int] = ..., bpm: _Optional[float] = ..., offset: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class CandidateSong(_message.Message):
    __slots__ = ("candidate", "seed", "size_bytes")
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    candidate: int
    seed: int
    size_bytes: int
    def __init__(self, candidate: _Optional[int] = ..., seed: _Optional[int] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class SongEvent(_message.Message):
    __slots__ = ("accepted", "progress", "audio", "done", "notice", "osz")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    OSZ_FIELD_NUMBER: _ClassVar[int]
    accepted: Accepted
    progress: Progress
    audio: AudioChunk
    done: SongSummary
    notice: Notice
    osz: OszChunk
    def __init__(self, accepted: _Optional[_Union[Accepted, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., audio: _Optional[_Union[AudioChunk, _Mapping]] = ..., done: _Optional[_Union[SongSummary, _Mapping]] = ..., notice: _Optional[_Union[Notice, _Mapping]] = ..., osz: _Optional[_Union[OszChunk, _Mapping]] = ...) -> None: ...

class Accepted(_message.Message):
    __slots__ = ("job_id", "seed", "model")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    seed: int
    model: str
    def __init__(self, job_id: _Optional[str] = ..., seed: _Optional[int] = ..., model: _Optional[str] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("stage", "blocks_done", "max_blocks", "generated", "step", "total_steps")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_DONE_FIELD_NUMBER: _ClassVar[int]
    MAX_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    GENERATED_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    stage: str
    blocks_done: int
    max_blocks: int
    generated: _duration_pb2.Duration
    step: int
    total_steps: int
    def __init__(self, stage: _Optional[str] = ..., blocks_done: _Optional[int] = ..., max_blocks: _Optional[int] = ..., generated: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., step: _Optional[int] = ..., total_steps: _Optional[int] = ...) -> None: ...

class Notice(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class AudioChunk(_message.Message):
    __slots__ = ("offset", "data", "format", "candidate")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    format: AudioFormat
    candidate: int
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ..., format: _Optional[_Union[AudioFormat, str]] = ..., candidate: _Optional[int] = ...) -> None: ...

class OszChunk(_message.Message):
    __slots__ = ("offset", "data")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("song",)
    SONG_FIELD_NUMBER: _ClassVar[int]
    song: SongRequest
    def __init__(self, song: _Optional[_Union[SongRequest, _Mapping]] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: SongEvent
    def __init__(self, event: _Optional[_Union[SongEvent, _Mapping]] = ...) -> None: ...

class SubmitJobRequest(_message.Message):
    __slots__ = ("song",)
    SONG_FIELD_NUMBER: _ClassVar[int]
    song: SongRequest
    def __init__(self, song: _Optional[_Union[SongRequest, _Mapping]] = ...) -> None: ...

class SubmitJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchJobResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: SongEvent
    def __init__(self, event: _Optional[_Union[SongEvent, _Mapping]] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("page_size", "state", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    state: JobState
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., state: _Optional[_Union[JobState, str]] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class DeleteJobResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StageRoute(_message.Message):
    __slots__ = ("stage", "target", "model", "error")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    stage: str
    target: str
    model: _model_pb2.ModelInfo
    error: str
    def __init__(self, stage: _Optional[str] = ..., target: _Optional[str] = ..., model: _Optional[_Union[_model_pb2.ModelInfo, _Mapping]] = ..., error: _Optional[str] = ...) -> None: ...

class RoutedModel(_message.Message):
    __slots__ = ("name", "default", "model", "stages")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    name: str
    default: bool
    model: _model_pb2.ModelInfo
    stages: _containers.RepeatedCompositeFieldContainer[StageRoute]
    def __init__(self, name: _Optional[str] = ..., default: _Optional[bool] = ..., model: _Optional[_Union[_model_pb2.ModelInfo, _Mapping]] = ..., stages: _Optional[_Iterable[_Union[StageRoute, _Mapping]]] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[RoutedModel]
    def __init__(self, models: _Optional[_Iterable[_Union[RoutedModel, _Mapping]]] = ...) -> None: ...
