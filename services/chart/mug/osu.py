"""The `.osu` file of a chart: the header template with its per-chart lines filled in, one red
timing line and the hit objects.

`assets/template.osu` holds the header lines (osu file format v14, osu!mania: `Mode: 3`,
`CircleSize: 4`, ...; `[Metadata]` has the reference's non-standard `AIMode` and `AIPrompt` keys).
Each line that starts with `Key:` for a key of `ChartMetadata` becomes `Key: value`; then come
`[TimingPoints]` with the grid's line, a blank line, `[HitObjects]` and one line per object.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

from services.chart.engine import HitObject
from services.chart.mug.grid import Grid
from services.chart.mug.hit_objects import KEYS

TEMPLATE = "template.osu"


@dataclass(frozen=True)
class ChartMetadata:
    """The header values that differ per chart: audio file, song title and artist, the model's
    name (creator and AI mode), the difficulty name and the prompt text."""

    audio_filename: str
    title: str
    artist: str
    creator: str
    version: str
    prompt: str

    def overrides(self) -> dict[str, str]:
        """Header key -> value, in the order the reference applies them."""
        return {
            "Creator": self.creator,
            "Version": self.version,
            "AudioFilename": self.audio_filename,
            "Title": self.title,
            "TitleUnicode": self.title,
            "Artist": self.artist,
            "ArtistUnicode": self.artist,
            "AIMode": self.creator,
            "AIPrompt": self.prompt,
        }


@cache
def template_lines() -> tuple[str, ...]:
    """The header template, line by line."""
    text = (
        resources.files("services.chart.mug")
        .joinpath("assets")
        .joinpath(TEMPLATE)
        .read_text(encoding="utf-8")
    )
    return tuple(text.split("\n"))


def osu_text(hit_objects: list[HitObject], grid: Grid, metadata: ChartMetadata) -> str:
    """The whole `.osu` file for one chart."""
    overrides = metadata.overrides()
    lines = []
    for line in template_lines():
        for key, value in overrides.items():
            if line.startswith(key + ":"):
                line = f"{key}: {value}"
                break
        lines.append(line)
    lines += ["[TimingPoints]", grid.timing_point(), "", "[HitObjects]"]
    lines += [hit.line(KEYS) for hit in hit_objects]
    return "\n".join(lines) + "\n"
