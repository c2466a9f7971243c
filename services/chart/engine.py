"""The chart stage's engine interface: a song and chart controls in, osu!mania charts out.

A chart family (Mug-Diffusion today) implements `ChartEngine` in its own package
(`services/chart/<family>/`) and registers a `Family` in `services.chart.families`; the servicer and
the command line only use what is here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from services.runtime.cancellation import CancellationToken
from services.runtime.model_info import ModelInfo

FeatureValue = float | bool | str
DEFAULT_STEPS = 100
DEFAULT_GUIDANCE = 5.0
DEFAULT_JACK_INTERVAL_MS = 90.0
DEFAULT_AUDIO_FILENAME = "audio.mp3"
PLAYFIELD_WIDTH = 512


@dataclass(frozen=True)
class ChartSettings:
    """How the stage loads its engine and what it accepts: device, the model name to serve under
    ("" = manifest or folder), the longest song in seconds and the most charts per request."""

    device: str = "cpu"
    name: str = ""
    max_audio_seconds: float = 600.0
    max_count: int = 8


@dataclass(frozen=True)
class SongAudio:
    """A song as encoded file bytes (WAV, FLAC, MP3, OGG) or as PCM [channels, n] / [n] float32
    at `sample_rate`; exactly one of `encoded` and `pcm` is set."""

    encoded: bytes | None = None
    pcm: np.ndarray | None = None
    sample_rate: int = 0


@dataclass(frozen=True)
class ChartRequest:
    """Charts to make for one song.

    features: the chart prompt, feature name -> value (a number, a bool or a category word; names and
    ranges come from the model's feature list). steps: sampler steps as the reference app counts them
    (the visited count can be higher). guidance: classifier-free guidance scale (1 = no unconditional
    pass). count: charts made together in one batch; chart i uses seed + i. snap: move notes onto the
    fitted beat grid. jack_interval_ms: the mini-jack clean-up's interval. title, artist,
    audio_filename: written into each chart's header.
    """

    audio: SongAudio
    features: Mapping[str, FeatureValue] = field(default_factory=dict)
    seed: int = 0
    steps: int = DEFAULT_STEPS
    guidance: float = DEFAULT_GUIDANCE
    count: int = 1
    snap: bool = True
    jack_interval_ms: float = DEFAULT_JACK_INTERVAL_MS
    title: str = ""
    artist: str = ""
    audio_filename: str = DEFAULT_AUDIO_FILENAME


@dataclass(frozen=True)
class HitObject:
    """One osu!mania note: its column (0 = leftmost), start time and, for a long note, end time, in
    milliseconds from the start of the song."""

    column: int
    start_ms: int
    end_ms: int | None = None

    @property
    def is_long(self) -> bool:
        """True for a long (held) note."""
        return self.end_ms is not None

    def x(self, keys: int) -> int:
        """The osu! x of the column's centre on a `keys`-column playfield (64, 192, 320, 448 for 4)."""
        return round((self.column + 0.5) * (PLAYFIELD_WIDTH // keys))

    def line(self, keys: int) -> str:
        """The `[HitObjects]` line: `x,192,t,1,0,0:0:0:0:` for a tap, `x,192,t,128,0,end:0:0:0:0:` for
        a long note."""
        if self.end_ms is None:
            return f"{self.x(keys)},192,{self.start_ms},1,0,0:0:0:0:"
        return f"{self.x(keys)},192,{self.start_ms},128,0,{self.end_ms}:0:0:0:0:"


@dataclass(frozen=True)
class Chart:
    """One finished chart.

    index: its position in the request (0-based); seed: the seed it was drawn from; keys: columns;
    hit_objects: what `[HitObjects]` lists, by start time; bpm and offset_ms: the red timing line;
    version: the difficulty name (`AI v{index + 1}`); file_name: the name osu! expects for the
    `.osu` file; osu: the whole file's text; latents: the sampler's final latents [channels, L].
    """

    index: int
    seed: int
    keys: int
    hit_objects: tuple[HitObject, ...]
    bpm: float
    offset_ms: float
    version: str
    file_name: str
    osu: str
    latents: np.ndarray


@dataclass(frozen=True)
class ChartProgress:
    """Sampler step `step` of `total_steps` is done (all charts of the request move together)."""

    step: int
    total_steps: int


ChartEvent = ChartProgress | Chart


class ChartEngine(Protocol):
    """A loaded chart model of one family."""

    info: ModelInfo

    def parse_features(self, assignments: list[str]) -> dict[str, FeatureValue]:
        """`NAME=VALUE` strings (numbers as decimals, booleans true/false, categories as the word)
        as checked values; InvalidArgumentError naming the feature."""
        ...

    def generate(self, request: ChartRequest, token: CancellationToken | None = None) -> Iterator[ChartEvent]:
        """Validate `request` at once (InvalidArgumentError naming the proto field, for a chart control
        `options.features.<name>`), then
        return the iterator that makes the charts: a progress event after every sampler step, then
        the charts in order. `token` is checked at every step."""
        ...

    def warm_up(self) -> None:
        """Make one tiny chart so the first request does not pay for set-up."""
        ...
