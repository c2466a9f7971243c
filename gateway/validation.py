"""Checks on a song request before any stage runs, and the request with its defaults filled in.

Every problem is reported at once as an INVALID_ARGUMENT field violation; lyrics problems name the
1-based line. The lyric rules are the tokenizer's own (imported from its pure-Python reader), so
the gateway and the stage can never disagree on what is readable.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass, field

from gateway.audio import CONTAINERS, DEFAULT_TARGET_LUFS
from gateway.pipeline import SongSpec
from gateway.stages import FRAMES_PER_SECOND
from services.runtime.errors import FieldViolation, InvalidArgumentError
from services.tokenizer.diffrhythm2.structure import LineKind, LyricsLimits, read_lyrics
from services.tokenizer.g2p.segmentation import split_segments, unreadable_reason
from songsmith.v1 import song_pb2

JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
DEFAULT_STEPS = 16
DEFAULT_CFG_STRENGTH = 2.0
DEFAULT_MAX_SECONDS = 210.0


@dataclass(frozen=True)
class RequestLimits:
    """Bounds on what one request may ask for."""

    lyrics: LyricsLimits = field(default_factory=LyricsLimits)
    max_prompt_chars: int = 1000
    max_style_audio_bytes: int = 3 << 20
    max_seconds: float = 600.0


def _lyrics_violations(lyrics: str, limits: LyricsLimits) -> list[FieldViolation]:
    try:
        read = read_lyrics(lyrics, limits)
    except InvalidArgumentError as exc:
        return exc.violations
    return [
        FieldViolation("lyrics", f"line {line.number}: {unreadable_reason(line.text)}")
        for line in read.lines
        if line.kind is LineKind.LYRIC and not split_segments(line.text)
    ]


def validate_request(request: song_pb2.SongRequest, limits: RequestLimits) -> None:
    """Raise InvalidArgumentError listing every bad field of `request`."""
    found: list[FieldViolation] = []
    if request.job_id and not JOB_ID_PATTERN.match(request.job_id):
        found.append(FieldViolation("job_id", "use 1..64 characters of A-Z, a-z, 0-9, '.', '_' and '-'"))
    found += _lyrics_violations(request.lyrics, limits.lyrics)
    style = request.WhichOneof("style")
    if style is None:
        found.append(FieldViolation("style", "give a style_prompt or style_audio"))
    elif style == "style_prompt":
        prompt = request.style_prompt.strip()
        if not prompt:
            found.append(FieldViolation("style_prompt", "the style prompt is empty"))
        elif len(prompt) > limits.max_prompt_chars:
            found.append(
                FieldViolation(
                    "style_prompt",
                    f"{len(prompt)} characters, more than the {limits.max_prompt_chars} allowed",
                )
            )
    elif not request.style_audio:
        found.append(FieldViolation("style_audio", "the reference recording is empty"))
    elif len(request.style_audio) > limits.max_style_audio_bytes:
        found.append(
            FieldViolation(
                "style_audio",
                f"{len(request.style_audio)} bytes, more than the {limits.max_style_audio_bytes} allowed",
            )
        )
    if request.steps and not 2 <= request.steps <= 200:
        found.append(FieldViolation("steps", f"{request.steps} is outside 2..200"))
    if request.HasField("cfg_strength") and not (
        math.isfinite(request.cfg_strength) and 0 <= request.cfg_strength <= 20
    ):
        found.append(FieldViolation("cfg_strength", f"{request.cfg_strength} is outside 0..20"))
    if request.max_seconds and not (
        math.isfinite(request.max_seconds) and 0 < request.max_seconds <= limits.max_seconds
    ):
        found.append(
            FieldViolation("max_seconds", f"{request.max_seconds} is outside (0, {limits.max_seconds:g}]")
        )
    if request.format not in CONTAINERS:
        found.append(FieldViolation("format", f"unknown audio format {request.format}"))
    if request.target_lufs and not (math.isfinite(request.target_lufs) and -70 <= request.target_lufs <= 0):
        found.append(FieldViolation("target_lufs", f"{request.target_lufs} is outside -70..0 LUFS"))
    if found:
        raise InvalidArgumentError(violations=found)


def draw_seed() -> int:
    """A fresh random seed for a request that did not name one."""
    return secrets.randbits(63)


def song_spec(request: song_pb2.SongRequest, job_id: str, seed: int) -> SongSpec:
    """The validated request as the pipeline runs it, with every default applied."""
    max_seconds = request.max_seconds or DEFAULT_MAX_SECONDS
    style = request.WhichOneof("style")
    return SongSpec(
        job_id=job_id,
        lyrics=request.lyrics,
        style_prompt=request.style_prompt.strip() if style == "style_prompt" else None,
        style_audio=request.style_audio if style == "style_audio" else None,
        seed=seed,
        steps=request.steps or DEFAULT_STEPS,
        cfg_strength=request.cfg_strength if request.HasField("cfg_strength") else DEFAULT_CFG_STRENGTH,
        max_frames=max(1, round(max_seconds * FRAMES_PER_SECOND)),
        audio_format=request.format,
        stereo=request.stereo,
        normalize_loudness=request.normalize_loudness,
        target_lufs=request.target_lufs or DEFAULT_TARGET_LUFS,
    )
