"""The lyric tokenizer engine: lyrics text in, the DiffRhythm 2 token sequence out.

Token for token what the reference front end (`chn_eng_g2p` plus the newer upstream lyric parser)
produces, but a whole song at a time: every English run of the song goes through espeak in one
phonemizer call and every Mandarin run that needs the polyphone model goes through it in one batch
per run length. Identical lines (a repeated chorus) are read once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from services.runtime.cancellation import CancellationToken
from services.runtime.errors import FieldViolation, InvalidArgumentError
from services.tokenizer.diffrhythm2.structure import (
    LYRICS_FIELD,
    START_ID,
    STOP_ID,
    LineKind,
    LyricsLimits,
    SourceLine,
    instrumental_tokens,
    read_lyrics,
)
from services.tokenizer.g2p.assets import FrontEndData
from services.tokenizer.g2p.english import EnglishPhonemizer, NumberTooLargeError, normalize_english
from services.tokenizer.g2p.mandarin import MandarinReader, PreparedRun, RunTooLongError
from services.tokenizer.g2p.polyphone import PolyphoneModel
from services.tokenizer.g2p.segmentation import split_segments, unreadable_reason

log = logging.getLogger(__name__)

WARM_UP_LINES = ("Hello world, 1 test", "银行的行长说了2026年")
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
        """The lyrics size bounds as the line reader takes them."""
        return LyricsLimits(self.max_chars, self.max_lines, self.max_line_chars)


@dataclass(frozen=True)
class TokenizedLine:
    """How one kept input line was read.

    `tokens` holds a lyric line's phoneme ids without the trailing 511, or a tag line's id alone;
    `phonemes` is the `|`-separated symbol string (empty for a tag).
    """

    number: int
    text: str
    kind: str
    phonemes: str
    tokens: list[int]
    timestamp: float | None = None


@dataclass(frozen=True)
class TokenizedLyrics:
    """A song's flat token sequence, how each line was read, and notes about dropped input."""

    tokens: list[int]
    lines: list[TokenizedLine]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LineReading:
    """The phoneme string and phoneme ids (shifted by +1) of one sung line, plus what was left out."""

    phonemes: str
    tokens: list[int]
    dropped_symbols: tuple[str, ...] = ()
    unsung_chars: str = ""


class UnreadableLineError(ValueError):
    """A sung line the front end cannot read; the message says why."""


class UnreadableLinesError(ValueError):
    """Some lines of a batch cannot be read; `failures` lists (index in the batch, reason) for each."""

    def __init__(self, failures: list[tuple[int, str]]) -> None:
        super().__init__("; ".join(f"line {index + 1}: {reason}" for index, reason in failures))
        self.failures = failures


@dataclass(frozen=True)
class _RunRef:
    """Where a line's run went: the English or the Mandarin batch, and its index there."""

    language: str
    index: int


class TokenizerEngine:
    """Turns lyrics into DiffRhythm 2 tokens; load once (a few seconds), then call `tokenize`."""

    def __init__(self, settings: TokenizerSettings) -> None:
        """Load the data, the espeak voice, jieba and the polyphone model; see `load`."""
        self.settings = settings
        self._data = FrontEndData.load(settings.data_dir or None)
        self._phoneme_ids = {symbol: index + 1 for symbol, index in self._data.phoneme_ids.items()}
        self._english = EnglishPhonemizer()
        polyphone = PolyphoneModel(
            self._data.polyphone_model,
            self._data.bert_vocab,
            self._data.polyphone_classes,
            settings.onnx_threads,
        )
        self._mandarin = MandarinReader(self._data, polyphone)

    @classmethod
    def load(cls, config: Any = None, **overrides: Any) -> TokenizerEngine:
        """Load and warm up an engine from settings, any config object with the same field names, or kwargs.

        Warm-up runs one English and one Mandarin line so espeak, jieba, cn2an, inflect and the ONNX
        session are ready before the first request.
        """
        names = {spec.name for spec in fields(TokenizerSettings)}
        values = {
            name: getattr(config, name) for name in names if config is not None and hasattr(config, name)
        }
        values.update(overrides)
        started = time.perf_counter()
        engine = cls(TokenizerSettings(**values))
        engine.read_lines(WARM_UP_LINES)
        log.info("lyric tokenizer loaded and warmed up in %.2f s", time.perf_counter() - started)
        return engine

    def tokenize(self, lyrics: str, token: CancellationToken | None = None) -> TokenizedLyrics:
        """The token sequence of a song's lyrics; INVALID_ARGUMENT naming the line for unreadable input."""
        read = read_lyrics(lyrics, self.settings.limits)
        if read.instrumental:
            return TokenizedLyrics(instrumental_tokens(), [], list(read.warnings))
        sung = [line for line in read.lines if line.kind is LineKind.LYRIC]
        distinct = list(dict.fromkeys(line.text for line in sung))
        if token is not None:
            token.check()
        try:
            readings = dict(zip(distinct, self.read_lines(distinct, token), strict=True))
        except UnreadableLinesError as exc:
            numbers: dict[str, int] = {}
            for line in sung:
                numbers.setdefault(line.text, line.number)
            violations = [
                FieldViolation(LYRICS_FIELD, f"line {numbers[distinct[index]]}: {reason}")
                for index, reason in exc.failures[:MAX_REPORTED_LINES]
            ]
            if len(exc.failures) > MAX_REPORTED_LINES:
                more = len(exc.failures) - MAX_REPORTED_LINES
                violations.append(FieldViolation(LYRICS_FIELD, f"and {more} more lines that cannot be read"))
            raise InvalidArgumentError(violations=violations) from exc
        return self._assemble(read.lines, readings, list(read.warnings))

    def _assemble(
        self, lines: list[SourceLine], readings: dict[str, LineReading], warnings: list[str]
    ) -> TokenizedLyrics:
        tokens: list[int] = []
        results: list[TokenizedLine] = []
        if not any(line.tag_id == START_ID for line in lines):
            tokens += [START_ID, STOP_ID]
        for line in lines:
            if line.kind is LineKind.TAG:
                assert line.tag_id is not None
                tokens += [line.tag_id, STOP_ID]
                results.append(
                    TokenizedLine(line.number, line.text, "tag", "", [line.tag_id], line.timestamp_seconds)
                )
                continue
            reading = readings[line.text]
            tokens += [*reading.tokens, STOP_ID]
            results.append(
                TokenizedLine(
                    line.number,
                    line.text,
                    "lyric",
                    reading.phonemes,
                    list(reading.tokens),
                    line.timestamp_seconds,
                )
            )
            if reading.unsung_chars:
                warnings.append(
                    f"line {line.number}: not sung (outside Mandarin and English): {reading.unsung_chars}"
                )
            if reading.dropped_symbols:
                warnings.append(
                    f"line {line.number}: symbols not in the model's vocabulary left out: "
                    + " ".join(reading.dropped_symbols)
                )
        return TokenizedLyrics(tokens, results, warnings)

    def read_lines(self, texts: Sequence[str], token: CancellationToken | None = None) -> list[LineReading]:
        """Read sung lines (no tags) as the reference's `chn_eng_g2p` does, all in one batch.

        Raises UnreadableLinesError listing every line (by index) that cannot be read.
        """
        plans: list[list[_RunRef]] = []
        english_runs: list[str] = []
        mandarin_runs: list[PreparedRun] = []
        failures: list[tuple[int, str]] = []
        for index, text in enumerate(texts):
            try:
                plans.append(self._plan_line(text, english_runs, mandarin_runs))
            except UnreadableLineError as exc:
                failures.append((index, str(exc)))
        if failures:
            raise UnreadableLinesError(failures)
        if token is not None:
            token.check()
        english = self._english.phonemize(english_runs)
        if token is not None:
            token.check()
        mandarin = self._mandarin.phonemize(mandarin_runs)
        return [self._finish_line(plan, english, mandarin, mandarin_runs) for plan in plans]

    def _plan_line(
        self, text: str, english_runs: list[str], mandarin_runs: list[PreparedRun]
    ) -> list[_RunRef]:
        segments = split_segments(text)
        if not segments:
            raise UnreadableLineError(unreadable_reason(text))
        plan: list[_RunRef] = []
        for segment in segments:
            if segment.language == "en":
                try:
                    english_runs.append(normalize_english(segment.text))
                except NumberTooLargeError as exc:
                    raise UnreadableLineError("a number too large to read out in English") from exc
                plan.append(_RunRef("en", len(english_runs) - 1))
            else:
                try:
                    mandarin_runs.append(self._mandarin.prepare(segment.text))
                except RunTooLongError as exc:
                    raise UnreadableLineError(str(exc)) from exc
                plan.append(_RunRef("zh", len(mandarin_runs) - 1))
        return plan

    def _finish_line(
        self, plan: list[_RunRef], english: list[str], mandarin: list[str], mandarin_runs: list[PreparedRun]
    ) -> LineReading:
        phonemes = ""
        tokens: list[int] = []
        dropped: list[str] = []
        unsung = ""
        for position, run in enumerate(plan):
            language = run.language
            if language == "en":
                run_phonemes = english[run.index]
            else:
                run_phonemes = mandarin[run.index]
                unsung += mandarin_runs[run.index].dropped
            phonemes += run_phonemes + "|"
            for symbol in run_phonemes.split("|"):
                if symbol in self._phoneme_ids:
                    tokens.append(self._phoneme_ids[symbol])
                elif symbol:
                    dropped.append(symbol)
            # A line that ends in English loses its final word boundary, as in the reference.
            if language == "en" and position == len(plan) - 1 and phonemes[-2:-1] == "_":
                phonemes = phonemes[:-2]
                tokens = tokens[:-1]
        return LineReading(phonemes.removesuffix("|"), tokens, tuple(dict.fromkeys(dropped)), unsung)
