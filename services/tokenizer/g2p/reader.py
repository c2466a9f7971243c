"""Sung lines to phonemes, a whole song at a time: the G2P every lyric family shares.

Reads lines as the reference's `chn_eng_g2p` does, but batched: every English run of the batch goes
through espeak in one phonemizer call and every Mandarin run that needs the polyphone model goes
through it in one batch per run length. Loading takes a few seconds (espeak voice, jieba, the ONNX
polyphone model), so a tokenizer process loads one reader and every front end uses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.runtime.cancellation import CancellationToken
from services.tokenizer.g2p.assets import FrontEndData
from services.tokenizer.g2p.english import EnglishPhonemizer, NumberTooLargeError, normalize_english
from services.tokenizer.g2p.mandarin import MandarinReader, PreparedRun, RunTooLongError
from services.tokenizer.g2p.polyphone import PolyphoneModel
from services.tokenizer.g2p.segmentation import split_segments, unreadable_reason

WARM_UP_LINES = ("Hello world, 1 test", "银行的行长说了2026年")


@dataclass(frozen=True)
class LineReading:
    """The phoneme string and phoneme ids (vocabulary index + 1) of one sung line, plus what was left out."""

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


class LyricReader:
    """The loaded G2P: the front end data, espeak, jieba and the polyphone model."""

    def __init__(self, data_dir: str = "", onnx_threads: int = 1) -> None:
        """Load the data (the installed diffrhythm2-fork package when `data_dir` is empty)."""
        self.data = FrontEndData.load(data_dir or None)
        self.phoneme_ids = {symbol: index + 1 for symbol, index in self.data.phoneme_ids.items()}
        self._english = EnglishPhonemizer()
        polyphone = PolyphoneModel(
            self.data.polyphone_model, self.data.bert_vocab, self.data.polyphone_classes, onnx_threads
        )
        self._mandarin = MandarinReader(self.data, polyphone)

    def warm_up(self) -> None:
        """Read one English and one Mandarin line so every library is ready before the first request."""
        self.read_lines(WARM_UP_LINES)

    def read_lines(
        self, texts: Sequence[str], token: CancellationToken | None = None, *, word_separators: bool = True
    ) -> list[LineReading]:
        """Read sung lines (no tags) as the reference's `chn_eng_g2p` does, all in one batch.

        `word_separators`: whether spaces inside a Mandarin run become the `_` word separator, as
        DiffRhythm 2 reads them; DiffRhythm v1 drops them. English runs are read the same either way.
        Raises UnreadableLinesError listing every line (by index) that cannot be read.
        """
        plans: list[list[_RunRef]] = []
        english_runs: list[str] = []
        mandarin_runs: list[PreparedRun] = []
        failures: list[tuple[int, str]] = []
        for index, text in enumerate(texts):
            try:
                plans.append(self._plan_line(text, english_runs, mandarin_runs, word_separators))
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
        self, text: str, english_runs: list[str], mandarin_runs: list[PreparedRun], word_separators: bool
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
                    mandarin_runs.append(self._mandarin.prepare(segment.text, word_separators))
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
                if symbol in self.phoneme_ids:
                    tokens.append(self.phoneme_ids[symbol])
                elif symbol:
                    dropped.append(symbol)
            # A line that ends in English loses its final word boundary, as in the reference.
            if language == "en" and position == len(plan) - 1 and phonemes[-2:-1] == "_":
                phonemes = phonemes[:-2]
                tokens = tokens[:-1]
        return LineReading(phonemes.removesuffix("|"), tokens, tuple(dict.fromkeys(dropped)), unsung)
