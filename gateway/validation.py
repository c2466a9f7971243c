"""Checks on a song request before any stage runs, and the request with the gateway's defaults filled in.

Every problem is reported at once as an INVALID_ARGUMENT field violation. Two passes: what any
request must satisfy (`validate_request`), and what the chosen model can use (`validate_for_model`:
the inputs its ModelInfo lists, its family's options, and its lyric family's own readability check,
which is the tokenizer's own rule, so the gateway and the stage never disagree). Charts asked for are
checked by the chart family's own rule too (`gateway.charts.check_charts`); asked of a gateway with
no chart stage, they are FAILED_PRECONDITION.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.audio import CONTAINERS, DEFAULT_TARGET_LUFS
from gateway.charts import check_charts
from gateway.pipeline import LENGTH_FIELDS, SongSpec, request_fields
from services.diffusion.families import GENERATION_FAMILIES
from services.runtime.errors import FieldViolation, InvalidArgumentError, ServiceError
from services.runtime.model_info import (
    LYRICS,
    MELODY_AUDIO,
    REFERENCE_AUDIO,
    STYLE_AUDIO,
    STYLE_TEXT,
    ModelInfo,
)
from services.tokenizer.families import LYRIC_FAMILIES
from services.tokenizer.limits import LyricsLimits
from songsmith.v1 import song_pb2

JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
OPTIONS_ONEOF = "model_options"


@dataclass(frozen=True)
class RequestLimits:
    """Bounds on what one request may ask for."""

    lyrics: LyricsLimits = field(default_factory=LyricsLimits)
    max_prompt_chars: int = 1000
    max_style_audio_bytes: int = 3 << 20
    max_seconds: float = 600.0


def max_seconds(request: song_pb2.SongRequest) -> float:
    """The request's song length in seconds (0 when it leaves it to the model)."""
    return request.max_duration.ToNanoseconds() / 1e9 if request.HasField("max_duration") else 0.0


def audio_format(request: song_pb2.SongRequest) -> int:
    """The request's container, the default (MP3) made explicit."""
    return request.format or song_pb2.AUDIO_FORMAT_MP3


def _size_violations(request: song_pb2.SongRequest, limits: RequestLimits) -> list[FieldViolation]:
    found = []
    prompt = request.style_prompt.strip()
    if len(prompt) > limits.max_prompt_chars:
        found.append(
            FieldViolation(
                "style_prompt", f"{len(prompt)} characters, more than the {limits.max_prompt_chars} allowed"
            )
        )
    for name in ("style_audio", "reference_audio"):
        size = len(getattr(request, name))
        if size > limits.max_style_audio_bytes:
            found.append(
                FieldViolation(name, f"{size} bytes, more than the {limits.max_style_audio_bytes} allowed")
            )
    if len(request.lyrics) > limits.lyrics.max_chars:
        found.append(
            FieldViolation(
                "lyrics", f"{len(request.lyrics)} characters, more than the {limits.lyrics.max_chars} allowed"
            )
        )
    return found


def validate_request(request: song_pb2.SongRequest, limits: RequestLimits) -> None:
    """Raise InvalidArgumentError listing every bad field of `request` that any model would refuse."""
    found = _size_violations(request, limits)
    if request.job_id and not JOB_ID_PATTERN.match(request.job_id):
        found.append(FieldViolation("job_id", "use 1..64 characters of A-Z, a-z, 0-9, '.', '_' and '-'"))
    if request.steps and not 2 <= request.steps <= 200:
        found.append(FieldViolation("steps", f"{request.steps} is outside 2..200"))
    if request.HasField("cfg_strength") and not (
        math.isfinite(request.cfg_strength) and 0 <= request.cfg_strength <= 20
    ):
        found.append(FieldViolation("cfg_strength", f"{request.cfg_strength} is outside 0..20"))
    seconds = max_seconds(request)
    if request.HasField("max_duration") and not 0 < seconds <= limits.max_seconds:
        found.append(
            FieldViolation("max_duration", f"{seconds:g} s is outside (0, {limits.max_seconds:g}] s")
        )
    if audio_format(request) not in CONTAINERS:
        found.append(FieldViolation("format", f"unknown audio format {request.format}"))
    if request.target_lufs and not (math.isfinite(request.target_lufs) and -70 <= request.target_lufs <= 0):
        found.append(FieldViolation("target_lufs", f"{request.target_lufs} is outside -70..0 LUFS"))
    if found:
        raise InvalidArgumentError(violations=found)


def _input_violations(request: song_pb2.SongRequest, info: ModelInfo) -> list[FieldViolation]:
    """What the request gives that the model cannot use, or lacks that it needs."""
    found = []
    model = f"the model {info.name} ({info.family})"
    prompt, audio = bool(request.style_prompt.strip()), bool(request.style_audio)
    if request.lyrics.strip() and LYRICS not in info.inputs:
        found.append(FieldViolation("lyrics", f"{model} sings no lyrics"))
    if request.reference_audio and REFERENCE_AUDIO not in info.inputs:
        found.append(FieldViolation("reference_audio", f"{model} cannot edit or continue a recording"))
    if audio and not {STYLE_AUDIO, MELODY_AUDIO} & set(info.inputs):
        found.append(FieldViolation("style_audio", f"{model} takes no recording"))
    if prompt and STYLE_TEXT not in info.inputs:
        found.append(FieldViolation("style_prompt", f"{model} takes no style prompt"))
    if STYLE_AUDIO in info.inputs:
        if prompt == audio:
            found.append(FieldViolation("style", "give exactly one of style_prompt or style_audio"))
    elif STYLE_TEXT in info.inputs and not prompt:
        found.append(FieldViolation("style_prompt", f"{model} needs a style prompt"))
    return found


def validate_for_model(request: song_pb2.SongRequest, info: ModelInfo, limits: RequestLimits) -> None:
    """Raise InvalidArgumentError listing every field of `request` the model cannot use."""
    found = _input_violations(request, info)
    arm = request.WhichOneof(OPTIONS_ONEOF)
    families = {family.name: family for family in GENERATION_FAMILIES.families()}
    if arm is not None and info.family in families and families[info.family].options_field != arm:
        found.append(
            FieldViolation(arm, f"options of another family; the model {info.name} is {info.family}")
        )
    lyric_families = {family.name: family for family in LYRIC_FAMILIES.families()}
    lyric_check = lyric_families[info.family].check_input if info.family in lyric_families else None
    if LYRICS in info.inputs and lyric_check is not None:
        try:
            lyric_check(request.lyrics, max_seconds(request), limits.lyrics)
        except InvalidArgumentError as exc:
            found += request_fields(exc, LENGTH_FIELDS).violations
    if found:
        raise InvalidArgumentError(violations=found)


def validate_song(
    request: song_pb2.SongRequest,
    limits: RequestLimits,
    model_info: Callable[[], ModelInfo],
    chart_info: Callable[[], ModelInfo] | None = None,
) -> ModelInfo:
    """Both passes at once: every bad field of `request` in one InvalidArgumentError, the model's
    problems and the charts' included. `model_info` finds the requested model's ModelInfo (NOT_FOUND
    for an unknown model, raised only when the request has no bad field of its own); returns it.
    `chart_info` asks the chart stage what it hosts; None: the gateway has no chart stage, and a
    request asking for charts is FAILED_PRECONDITION (when it has no bad field)."""
    found: list[FieldViolation] = []
    try:
        validate_request(request, limits)
    except InvalidArgumentError as exc:
        found += exc.violations
    try:
        info = model_info()
    except ServiceError:
        if found:
            raise InvalidArgumentError(violations=found) from None
        raise
    try:
        validate_for_model(request, info, limits)
    except InvalidArgumentError as exc:
        found += exc.violations
    try:
        found += check_charts(request, chart_info)
    except ServiceError:
        if found:
            raise InvalidArgumentError(violations=found) from None
        raise
    if found:
        raise InvalidArgumentError(violations=found)
    return info


def draw_seed() -> int:
    """A fresh random seed for a request that did not name one."""
    return secrets.randbits(63)


def song_spec(request: song_pb2.SongRequest, job_id: str, seed: int) -> SongSpec:
    """The validated request as the pipeline runs it (model defaults are left to the model)."""
    arm = request.WhichOneof(OPTIONS_ONEOF)
    return SongSpec(
        job_id=job_id,
        model=request.model,
        lyrics=request.lyrics,
        style_prompt=request.style_prompt.strip() or None,
        style_audio=request.style_audio or None,
        seed=seed,
        steps=request.steps,
        cfg_strength=request.cfg_strength if request.HasField("cfg_strength") else None,
        max_seconds=max_seconds(request),
        audio_format=audio_format(request),
        stereo=request.stereo,
        normalize_loudness=request.normalize_loudness,
        target_lufs=request.target_lufs or DEFAULT_TARGET_LUFS,
        options_field=arm,
        options=getattr(request, arm) if arm else None,
        reference_audio=request.reference_audio or None,
        charts=request.charts if request.HasField("charts") else None,
        keep_raw_level=bool(arm) and _keeps_raw_level(getattr(request, arm)),
    )


def _keeps_raw_level(options: Any) -> bool:
    """Whether a family's options message asks for the decoded level (`keep_raw_level`, DiffRhythm v1)."""
    return "keep_raw_level" in options.DESCRIPTOR.fields_by_name and bool(options.keep_raw_level)
