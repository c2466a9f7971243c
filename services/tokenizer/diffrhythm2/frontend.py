"""DiffRhythm 2's lyric front end: lyrics text in, the flat token sequence out.

Token for token what the reference front end (`chn_eng_g2p` plus the newer upstream lyric parser)
produces: structure tags as [tag, 511], each sung line as its phoneme ids then 511, `[start] 511`
first when absent. Identical lines (a repeated chorus) are read once.
"""

from __future__ import annotations

from typing import Any

from services.runtime.cancellation import CancellationToken
from services.tokenizer.diffrhythm2.structure import (
    START_ID,
    STOP_ID,
    LineKind,
    SourceLine,
    instrumental_tokens,
    read_lyrics,
)
from services.tokenizer.engine import (
    TokenizedLine,
    TokenizedLyrics,
    TokenizerSettings,
    unreadable_lines_error,
)
from services.tokenizer.g2p.reader import LineReading, LyricReader, UnreadableLinesError


class DiffRhythm2Lyrics:
    """Reads lyrics into DiffRhythm 2 tokens through the shared reader."""

    def __init__(self, reader: LyricReader, settings: TokenizerSettings) -> None:
        """Use `reader` for sung lines and the size limits of `settings`."""
        self.reader = reader
        self.limits = settings.limits

    def tokenize(
        self, lyrics: str, seconds: float = 0.0, options: Any = None, token: CancellationToken | None = None
    ) -> TokenizedLyrics:
        """The token sequence of a song's lyrics; INVALID_ARGUMENT naming the line for unreadable input.
        DiffRhythm 2 lyrics are not aligned to time, so `seconds` is not read; it has no options."""
        read = read_lyrics(lyrics, self.limits)
        if read.instrumental:
            return TokenizedLyrics(instrumental_tokens(), [], list(read.warnings))
        sung = [line for line in read.lines if line.kind is LineKind.LYRIC]
        distinct = list(dict.fromkeys(line.text for line in sung))
        if token is not None:
            token.check()
        try:
            readings = dict(zip(distinct, self.reader.read_lines(distinct, token), strict=True))
        except UnreadableLinesError as exc:
            numbers: dict[str, int] = {}
            for line in sung:
                numbers.setdefault(line.text, line.number)
            raise unreadable_lines_error(exc, distinct, numbers) from exc
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
