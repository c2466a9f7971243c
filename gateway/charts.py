"""Charts for a finished song: the request's `charts` checked before the song is accepted, the
options the chart stage gets, and the `.osz` the charts are packed in.

The chart stage reads the song's encoded file, the very file the job stores and the `.osz` holds,
so a chart is what the chart stage (or `songsmith chart generate`) makes from that file. The `.osz`
is a zip of the audio file (`audio.<ext>`, the name every chart's AudioFilename gives) and the
`.osu` files under the names osu! expects; its entries carry a fixed timestamp, so the same charts
always pack into the same bytes.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from io import BytesIO

from google.protobuf.duration_pb2 import Duration

from services.chart.engine import DEFAULT_GUIDANCE, DEFAULT_STEPS, ChartRequest, SongAudio
from services.chart.families import CHART_FAMILIES
from services.chart.servicer import feature_values
from services.runtime.errors import FailedPreconditionError, FieldViolation, InvalidArgumentError
from services.runtime.model_info import ModelInfo
from songsmith.v1 import chart_pb2, song_pb2

FIELD = "charts"
MAX_CHARTS = 8
MAX_NAME_CHARS = 200
# Characters no file name may hold on Windows, where osu! unpacks the `.osz`: titles and artists name
# the `.osu` files, so they are refused there (control characters too).
UNSAFE_NAME_CHARACTERS = re.compile(r'[\\/:*?"<>|\x00-\x1f]')
DEFAULT_TITLE = "Untitled"
DEFAULT_ARTIST = "Unknown Artist"
# The stage's own name for its request settings, replaced by FIELD in what the client is told.
STAGE_OPTIONS_FIELD = "options"
# Zip entries' timestamp (the earliest a zip can hold), so that equal charts give equal bytes.
ENTRY_TIME = (1980, 1, 1, 0, 0, 0)


class NoChartStageError(FailedPreconditionError):
    """A song asks for charts and the gateway has no chart stage."""

    def __init__(self) -> None:
        super().__init__(
            "charts: this gateway has no chart stage (configure chart_target / SONGSMITH_CHART_TARGET, "
            "or put a chart model folder under the model root)"
        )


def chart_seed(charts: song_pb2.ChartRequest, song_seed: int) -> int:
    """The first chart's seed: the request's, else the song's."""
    return charts.seed if charts.HasField("seed") else song_seed


def _title(charts: song_pb2.ChartRequest) -> str:
    return charts.title.strip() or DEFAULT_TITLE


def _artist(charts: song_pb2.ChartRequest) -> str:
    return charts.artist.strip() or DEFAULT_ARTIST


def chart_options(
    charts: song_pb2.ChartRequest, job_id: str, song_seed: int, audio_filename: str
) -> chart_pb2.ChartOptions:
    """What the chart stage is asked for a song's `charts` (defaults made explicit)."""
    options = chart_pb2.ChartOptions(
        job_id=job_id,
        features=charts.features,
        seed=chart_seed(charts, song_seed),
        steps=charts.steps or DEFAULT_STEPS,
        count=charts.count or 1,
        title=_title(charts),
        artist=_artist(charts),
        audio_filename=audio_filename,
    )
    options.guidance = charts.guidance if charts.HasField("guidance") else DEFAULT_GUIDANCE
    return options


def _settings(charts: song_pb2.ChartRequest, song_seed: int) -> ChartRequest:
    """The settings and prompt of `charts` as a chart engine request without audio, for checking."""
    return ChartRequest(
        audio=SongAudio(),
        features=feature_values(charts.features),
        seed=chart_seed(charts, song_seed),
        steps=charts.steps or DEFAULT_STEPS,
        guidance=charts.guidance if charts.HasField("guidance") else DEFAULT_GUIDANCE,
        count=charts.count or 1,
    )


def check_charts(
    request: song_pb2.SongRequest, chart_info: Callable[[], ModelInfo] | None
) -> list[FieldViolation]:
    """The problems of a song request's `charts` (none when it asks for no charts), found without
    making anything: the count, title and artist (they name files: at most 200 characters, none that a
    file name cannot hold on Windows), then the chart family's own check of the settings
    and prompt (the stage checks again against its model). `chart_info` asks the chart stage what it
    hosts; None means the gateway has none (NoChartStageError)."""
    if not request.HasField("charts"):
        return []
    if chart_info is None:
        raise NoChartStageError()
    charts = request.charts
    found = []
    if charts.count > MAX_CHARTS:
        found.append(FieldViolation(f"{FIELD}.count", f"{charts.count} is outside 1..{MAX_CHARTS}"))
    for name in ("title", "artist"):
        text = getattr(charts, name)
        if len(text) > MAX_NAME_CHARS:
            found.append(FieldViolation(f"{FIELD}.{name}", f"more than {MAX_NAME_CHARS} characters"))
        elif UNSAFE_NAME_CHARACTERS.search(text):
            found.append(
                FieldViolation(
                    f"{FIELD}.{name}", 'it names files: no control characters or \\ / : * ? " < > |'
                )
            )
    if found:
        return found
    family = {family.name: family for family in CHART_FAMILIES.families()}.get(chart_info().family)
    if family is None or family.check_input is None:
        return []
    try:
        family.check_input(_settings(charts, request.seed), FIELD, MAX_CHARTS)
    except InvalidArgumentError as exc:
        return list(exc.violations)
    return []


def from_stage(
    responses: Iterable[chart_pb2.GenerateChartsResponse],
) -> Iterator[chart_pb2.GenerateChartsResponse]:
    """The chart stage's responses, with its complaints told as the song request's fields: a setting
    `options.<field>` as `charts.<field>`, anything about the song's audio as `charts`."""
    try:
        yield from responses
    except InvalidArgumentError as exc:
        renamed = [
            FieldViolation(
                FIELD + violation.field.removeprefix(STAGE_OPTIONS_FIELD),
                violation.description,
            )
            if violation.field.startswith(f"{STAGE_OPTIONS_FIELD}.")
            else FieldViolation(FIELD, f"the chart stage cannot use the song: {violation.description}")
            for violation in exc.violations
        ]
        raise InvalidArgumentError(violations=renamed) from exc


def osz_name(options: chart_pb2.ChartOptions) -> str:
    """The name osu! gives a package of charts: "{artist} - {title}.osz"."""
    return f"{options.artist} - {options.title}.osz"


def osz_archive(audio_filename: str, audio: bytes, charts: Iterable[chart_pb2.GeneratedChart]) -> bytes:
    """The `.osz`: the audio file (stored as is: it is compressed already) and each chart's `.osu`
    (deflated), in that order, with a fixed timestamp."""
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        entries = [(audio_filename, audio, zipfile.ZIP_STORED)]
        entries += [(chart.file_name, chart.osu.encode("utf-8"), zipfile.ZIP_DEFLATED) for chart in charts]
        for name, data, compression in entries:
            entry = zipfile.ZipInfo(name, date_time=ENTRY_TIME)
            entry.compress_type = compression
            archive.writestr(entry, data)
    return buffer.getvalue()


def chart_set(
    charts: Iterable[chart_pb2.GeneratedChart], osz: bytes, name: str, info: ModelInfo
) -> song_pb2.ChartSet:
    """What the song's summary says about its charts."""
    return song_pb2.ChartSet(
        osz_size_bytes=len(osz),
        osz_name=name,
        model=info.name,
        model_revision=info.revision,
        charts=[
            song_pb2.ChartSummary(
                file_name=chart.file_name,
                version=chart.version,
                seed=chart.seed,
                hit_objects=len(chart.hit_objects),
                bpm=chart.bpm,
                offset=_milliseconds(chart.offset_ms),
            )
            for chart in charts
        ],
    )


def _milliseconds(value: float) -> Duration:
    duration = Duration()
    duration.FromNanoseconds(round(value * 1e6))
    return duration


def parse_features(assignments: Iterable[str]) -> chart_pb2.ChartFeatures:
    """`NAME=VALUE` strings (the command line's `--feature`) as the typed prompt: NAME a ChartFeatures
    field, numbers as decimals, booleans true/false, rank_status as ranked/loved/graveyard. Ranges are
    checked by the gateway. ValueError naming the feature for an unknown name or an unreadable value."""
    features = chart_pb2.ChartFeatures()
    fields = chart_pb2.ChartFeatures.DESCRIPTOR.fields_by_name
    for assignment in assignments:
        name, sep, text = (part.strip() for part in assignment.partition("="))
        if not sep or not name:
            raise ValueError(f"--feature takes NAME=VALUE, got {assignment!r}")
        field = fields.get(name)
        if field is None:
            raise ValueError(f"unknown chart feature {name!r}; known: {', '.join(fields)}")
        if field.enum_type is not None:
            prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", field.enum_type.name).upper() + "_"
            words = {
                value.name.removeprefix(prefix).lower(): value.number
                for value in field.enum_type.values
                if value.number
            }
            if text.lower() not in words:
                raise ValueError(f"feature {name}: use one of {', '.join(words)}, not {text!r}")
            setattr(features, name, words[text.lower()])
        elif field.type == field.TYPE_BOOL:
            if text.lower() not in ("true", "false"):
                raise ValueError(f"feature {name}: use true or false, not {text!r}")
            setattr(features, name, text.lower() == "true")
        else:
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"feature {name}: {text!r} is not a number") from None
            setattr(features, name, value)
    return features
