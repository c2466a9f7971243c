"""The lyric tokenizer stage's engine: one shared G2P, one front end per lyric family.

The tokenizer is shared by every family that sings lyrics: a request names its family and the
engine hands the lyrics to that family's front end (`services/tokenizer/<family>/`), registered in
`services.tokenizer.families`. All front ends read sung lines through the one `LyricReader`, loaded
once per process.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from services.runtime.cancellation import CancellationToken
from services.runtime.errors import FieldViolation, InvalidArgumentError
from services.runtime.model_info import LYRICS, ModelInfo, weights_revision
from services.tokenizer.g2p.reader import LyricReader, UnreadableLinesError
from services.tokenizer.limits import LYRICS_FIELD, LyricsLimits

log = logging.getLogger(__name__)

DEFAULT_FAMILY = "diffrhythm2"
FAMILY_FIELD = "family"
TOKENIZER_NAME = "lyrics"
# Unreadable lines named one by one in an error; the status message must stay small.
MAX_REPORTED_LINES = 10


@dataclass
class TokenizerSettings:
    """What the engine needs to know: where the data is, the size limits, and CPU threads."""

    data_dir: str = ""
    max_chars: int = 20_000
    max_lines: int = 500
    max_line_chars: int = 500
    onnx_threads: int = 1

    @property
    def limits(self) -> LyricsLimits:
        """The lyrics size bounds."""
        return LyricsLimits(self.max_chars, self.max_lines, self.max_line_chars)


@dataclass(frozen=True)
class TokenizedLine:
    """How one kept input line was read.

    `tokens` holds a lyric line's phoneme ids (without a family's separators), or a tag line's id
    alone; `phonemes` is the `|`-separated symbol string (empty for a tag); `timestamp` the LRC time.
    """

    number: int
    text: str
    kind: str
    phonemes: str
    tokens: list[int]
    timestamp: float | None = None


@dataclass(frozen=True)
class TokenizedLyrics:
    """A song's token sequence as its family's model reads it, how each line was read, and notes
    about dropped input."""

    tokens: list[int]
    lines: list[TokenizedLine]
    warnings: list[str] = field(default_factory=list)


def unreadable_lines_error(
    exc: UnreadableLinesError, texts: list[str], numbers: dict[str, int]
) -> InvalidArgumentError:
    """INVALID_ARGUMENT on `lyrics` naming (up to ten of) the lines the reader could not read;
    `texts` are the lines as read in the batch, `numbers` each text's first line number."""
    violations = [
        FieldViolation(LYRICS_FIELD, f"line {numbers[texts[index]]}: {reason}")
        for index, reason in exc.failures[:MAX_REPORTED_LINES]
    ]
    if len(exc.failures) > MAX_REPORTED_LINES:
        more = len(exc.failures) - MAX_REPORTED_LINES
        violations.append(FieldViolation(LYRICS_FIELD, f"and {more} more lines that cannot be read"))
    return InvalidArgumentError(violations=violations)


class LyricsFrontEnd(Protocol):
    """One family's reading of lyrics into the token sequence its model takes."""

    def tokenize(
        self, lyrics: str, seconds: float, options: Any, token: CancellationToken | None
    ) -> TokenizedLyrics:
        """The tokens of `lyrics` for a song of `seconds` (0: the family's default; front ends that
        do not align lyrics to time ignore it); INVALID_ARGUMENT naming the line for unreadable input."""
        ...


class TokenizerEngine:
    """Every registered lyric family's front end over one loaded G2P."""

    def __init__(self, settings: TokenizerSettings, reader: LyricReader) -> None:
        """Build each family's front end over `reader`; see `load`."""
        from services.tokenizer.families import LYRIC_FAMILIES

        self.settings = settings
        self.reader = reader
        self.front_ends: dict[str, LyricsFrontEnd] = {
            family.name: family.load(reader, settings) for family in LYRIC_FAMILIES.families()
        }
        self.info = ModelInfo(
            name=TOKENIZER_NAME,
            family="",
            revision=weights_revision([reader.data.vocab_path]),
            families=tuple(self.front_ends),
            inputs=(LYRICS,),
        )

    @classmethod
    def load(cls, config: Any = None, **overrides: Any) -> TokenizerEngine:
        """Load and warm up an engine from settings, any config object with the same field names, or kwargs.

        Warm-up reads one English and one Mandarin line so espeak, jieba, cn2an, inflect and the
        ONNX session are ready before the first request.
        """
        names = {spec.name for spec in fields(TokenizerSettings)}
        values = {
            name: getattr(config, name) for name in names if config is not None and hasattr(config, name)
        }
        values.update(overrides)
        started = time.perf_counter()
        settings = TokenizerSettings(**values)
        reader = LyricReader(settings.data_dir, settings.onnx_threads)
        reader.warm_up()
        engine = cls(settings, reader)
        log.info("lyric tokenizer loaded and warmed up in %.2f s", time.perf_counter() - started)
        return engine

    def tokenize(
        self,
        lyrics: str,
        token: CancellationToken | None = None,
        *,
        family: str = "",
        seconds: float = 0.0,
        options: Any = None,
    ) -> TokenizedLyrics:
        """The tokens of `lyrics` as `family`'s model reads them (default DiffRhythm 2).

        INVALID_ARGUMENT on `family` for a family without a lyric front end, and naming the line
        for lyrics the front end cannot read.
        """
        name = family or DEFAULT_FAMILY
        front_end = self.front_ends.get(name)
        if front_end is None:
            raise InvalidArgumentError(
                FAMILY_FIELD,
                f"no lyric front end for {name!r}; this stage reads {', '.join(self.front_ends)}",
            )
        return front_end.tokenize(lyrics, seconds, options, token)
