"""DiffRhythm v1's lyric front end: an LRC text and a song length in, one token per latent frame out.

The sung lines go through the shared reader in one batch, with spaces inside Mandarin runs dropped
rather than read as word separators (v1's reading); their phoneme ids (vocabulary index + 1, so
1..363 over v1's 363-symbol table) are placed on the frames as `lrc` describes. Only the lines the
song sings are read, so a line after the song's end never fails a request.
"""

from __future__ import annotations

from typing import Any

from services.runtime.cancellation import CancellationToken
from services.tokenizer.diffrhythm1.length import SAMPLE_RATE, SAMPLES_PER_FRAME, frame_of
from services.tokenizer.diffrhythm1.lrc import Placement, TimedLine, line_tokens, place_lines, read_song
from services.tokenizer.engine import (
    TokenizedLine,
    TokenizedLyrics,
    TokenizerSettings,
    unreadable_lines_error,
)
from services.tokenizer.g2p.reader import LineReading, LyricReader, UnreadableLinesError


class DiffRhythm1Lyrics:
    """Reads LRC lyrics into DiffRhythm v1's frame-aligned tokens through the shared reader."""

    def __init__(self, reader: LyricReader, settings: TokenizerSettings) -> None:
        """Use `reader` for sung lines and the size limits of `settings`."""
        self.reader = reader
        self.settings = settings

    def tokenize(
        self, lyrics: str, seconds: float = 0.0, options: Any = None, token: CancellationToken | None = None
    ) -> TokenizedLyrics:
        """The song's tokens, one per frame (0 = none), for a song of `seconds` (95, or 96..285;
        0 means 95). INVALID_ARGUMENT on `seconds` for another length, on `lyrics` for text past the
        size limits, for text with lines but none timed, and for a sung line that cannot be read
        (naming its line). Empty lyrics make an instrumental (all zeros). No options."""
        song = read_song(lyrics, seconds, self.settings)
        length, parsed, kept, dropped = song.length, song.parsed, song.kept, song.dropped
        if token is not None:
            token.check()
        readings = self._read(kept, token)
        tokens, placements = place_lines(kept, [line_tokens(r.tokens) for r in readings], length.frames)
        warnings = self._warnings(parsed.untimed, dropped, kept, readings, placements, length.seconds)
        lines = [
            TokenizedLine(
                line.number, line.text, "lyric", reading.phonemes, list(reading.tokens), line.seconds
            )
            for line, reading in zip(kept, readings, strict=True)
        ]
        if not parsed.lines:
            warnings.append("empty lyrics: an instrumental")
        return TokenizedLyrics(tokens, lines, warnings)

    def _read(self, kept: list[TimedLine], token: CancellationToken | None) -> list[LineReading]:
        distinct = list(dict.fromkeys(line.text for line in kept))
        try:
            readings = dict(
                zip(distinct, self.reader.read_lines(distinct, token, word_separators=False), strict=True)
            )
        except UnreadableLinesError as exc:
            numbers: dict[str, int] = {}
            for line in kept:
                numbers.setdefault(line.text, line.number)
            raise unreadable_lines_error(exc, distinct, numbers) from exc
        return [readings[line.text] for line in kept]

    @staticmethod
    def _warnings(
        untimed: list[int],
        dropped: list[TimedLine],
        kept: list[TimedLine],
        readings: list[LineReading],
        placements: list[Placement],
        seconds: int,
    ) -> list[str]:
        """What was not sung, or not sung where written, in line order."""
        notes = [(number, "not an [mm:ss.xx] timed line, not sung") for number in untimed]
        for line in dropped:
            if line.seconds < seconds:
                notes.append((line.number, "the 95 s model does not sing the last line (as the reference)"))
            else:
                notes.append((line.number, f"starts at {line.seconds:g} s, after the song's {seconds} s end"))
        for line, reading, placement in zip(kept, readings, placements, strict=True):
            if placement.sung < placement.length:
                notes.append(
                    (
                        line.number,
                        f"cut at the song's end ({placement.sung} of {placement.length} tokens sung)",
                    )
                )
            if placement.sung and placement.start > frame_of(line.seconds):
                moved = placement.start * SAMPLES_PER_FRAME / SAMPLE_RATE
                notes.append(
                    (
                        line.number,
                        f"starts at {moved:.2f} s instead of {line.seconds:g} s, after the line before",
                    )
                )
            if reading.unsung_chars:
                notes.append(
                    (line.number, f"not sung (outside Mandarin and English): {reading.unsung_chars}")
                )
            if reading.dropped_symbols:
                symbols = " ".join(reading.dropped_symbols)
                notes.append((line.number, f"symbols not in the model's vocabulary left out: {symbols}"))
        return [f"line {number}: {note}" for number, note in sorted(notes, key=lambda item: item[0])]
