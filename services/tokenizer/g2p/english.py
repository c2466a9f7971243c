"""English runs to IPA: text normalization, espeak-ng (en-us) through phonemizer, phone merges.

Matches the reference front end symbol for symbol: abbreviations and numbers are spelled out
(inflect), the text is reduced to word characters and `,.?!;:'…`, espeak-ng phonemizes it with
punctuation preserved and stress removed, punctuation becomes separate symbols, a word boundary `_`
follows a final phone, and a fixed list of phone pairs is merged. Many runs go through espeak in a
single phonemizer call.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import espeakng_loader
import typeguard
from phonemizer.backend import EspeakBackend
from phonemizer.backend.espeak.wrapper import EspeakWrapper
from phonemizer.separator import Separator

from services.tokenizer.g2p.punctuation import ascii_punctuation, tighten_punctuation

ESPEAK_VOICE = "en-us"
KEPT_PUNCTUATION = ",.?!;:'…"
_SEPARATOR = Separator(word="|_|", syllable="-", phone="|")

_ABBREVIATIONS = {
    "mrs": "misess",
    "mr": "mister",
    "dr": "doctor",
    "st": "saint",
    "co": "company",
    "jr": "junior",
    "maj": "major",
    "gen": "general",
    "drs": "doctors",
    "rev": "reverend",
    "lt": "lieutenant",
    "hon": "honorable",
    "sgt": "sergeant",
    "capt": "captain",
    "esq": "esquire",
    "ltd": "limited",
    "col": "colonel",
    "ft": "fort",
    "etc": "et cetera",
    "btw": "by the way",
}
# One alternation is equivalent to the reference's one substitution per abbreviation: each is a
# whole word (\b on both sides), and no expansion contains another abbreviation as a whole word.
_ABBREVIATION_RE = re.compile(r"\b(" + "|".join(_ABBREVIATIONS) + r")\b", re.IGNORECASE)

_COMMA_NUMBER_RE = re.compile(r"([0-9][0-9\,]+[0-9])")
_DECIMAL_NUMBER_RE = re.compile(r"([0-9]+\.[0-9]+)")
_PERCENT_NUMBER_RE = re.compile(r"([0-9\.\,]*[0-9]+%)")
_POUNDS_RE = re.compile(r"£([0-9\,]*[0-9]+)")
_DOLLARS_RE = re.compile(r"\$([0-9\.\,]*[0-9]+)")
_FRACTION_RE = re.compile(r"([0-9]+)/([0-9]+)")
_ORDINAL_RE = re.compile(r"[0-9]+(st|nd|rd|th)")
_NUMBER_RE = re.compile(r"[0-9]+")
_ASCII_DIGIT_RE = re.compile(r"[0-9]")

_NOT_SPOKEN_RE = re.compile(r"[^\w\s_,\.\?!;:\'…]")
_SPACES_RE = re.compile(r"\s+")
_PUNCTUATION_RE = re.compile(r"([,\.\?!;:\'…])")
_REPEATED_BARS_RE = re.compile(r"\|+")
_FINAL_PHONE_CHARS = "p⁼ʰmftnlkxʃs`ɹaoəɛɪeɑʊŋiuɥwæjː"

_PHONE_MERGES = (
    ("t|ɹ", "tɹ"),
    ("d|ɹ", "dɹ"),
    ("t|s", "ts"),
    ("d|z", "dz"),
    ("ɪ|ɹ", "ɪɹ"),
    ("ɐ", "ɚ"),
    ("ᵻ", "ɪ"),
    ("əl", "l"),
    ("x", "k"),
    ("ɬ", "l"),
    ("ʔ", "t"),
    ("n̩", "n"),
    ("oː|ɹ", "oːɹ"),
)
_PHONE_MERGE_RES = tuple(
    (source, re.compile(r"(^|[_|])" + re.escape(source) + r"([_|]|$)"), r"\g<1>" + target + r"\g<2>")
    for source, target in _PHONE_MERGES
)


def _import_inflect() -> ModuleType:
    """Import inflect without typeguard's import-time instrumentation.

    inflect 7 decorates 23 methods with typeguard's `@typechecked`, which re-parses and recompiles
    inflect's whole source once per method: 3 to 4 seconds of start-up on this machine, most of the
    tokenizer's warm-up. Importing it with the decorator replaced by the identity loses only
    inflect's run-time argument type checks; we pass it plain ints and strs.
    """
    if "inflect" in sys.modules:
        return sys.modules["inflect"]
    original = typeguard.typechecked

    def identity(target: Any = None, **_options: Any) -> Any:
        return target if target is not None else (lambda function: function)

    typeguard.typechecked = identity
    try:
        return importlib.import_module("inflect")
    finally:
        typeguard.typechecked = original


_inflect_module = _import_inflect()
_inflect = _inflect_module.engine()
_INFLECT_LOCK = threading.Lock()
# Raised for numbers too large to say in words (inflect stops below 10**36).
NumberTooLargeError: type[Exception] = _inflect_module.NumOutOfRangeError
# phonemizer reports word-count mismatches and language switches as warnings; the reference ignores
# both (words_mismatch="ignore", language_switch="remove-flags"), so they are noise here.
_ESPEAK_LOG = logging.getLogger("songsmith.tokenizer.espeak")
_ESPEAK_LOG.setLevel(logging.ERROR)


def _expand_dollars(match: re.Match[str]) -> str:
    parts = match.group(1).split(".")
    if len(parts) > 2:
        return f" {match.group(1)} dollars "
    dollars = int(parts[0]) if parts[0] else 0
    cents = int(parts[1]) if len(parts) > 1 and parts[1] else 0
    dollar_unit = "dollar" if dollars == 1 else "dollars"
    cent_unit = "cent" if cents == 1 else "cents"
    if dollars and cents:
        return f" {dollars} {dollar_unit}, {cents} {cent_unit} "
    if dollars:
        return f" {dollars} {dollar_unit} "
    if cents:
        return f" {cents} {cent_unit} "
    return " zero dollars "


def _expand_fraction(match: re.Match[str]) -> str:
    numerator, denominator = int(match.group(1)), int(match.group(2))
    if numerator == 1 and denominator == 2:
        return " one half "
    if numerator == 1 and denominator == 4:
        return " one quarter "
    if denominator == 2:
        return f" {_inflect.number_to_words(numerator)} halves "
    if denominator == 4:
        return f" {_inflect.number_to_words(numerator)} quarters "
    return (
        f" {_inflect.number_to_words(numerator)} {_inflect.ordinal(_inflect.number_to_words(denominator))} "
    )


def _expand_number(match: re.Match[str]) -> str:
    number = int(match.group(0))
    if not 1000 < number < 3000:
        return f" {_inflect.number_to_words(number, andword='')} "
    if number == 2000:
        return " two thousand "
    if 2000 < number < 2010:
        return f" two thousand {_inflect.number_to_words(number % 100)} "
    if number % 100 == 0:
        return f" {_inflect.number_to_words(number // 100)} hundred "
    # Years such as 1984 are read in pairs: "nineteen eighty-four".
    return " " + _inflect.number_to_words(number, andword="", zero="oh", group=2).replace(", ", " ") + " "


def spell_out_numbers(text: str) -> str:
    """Numbers, money, fractions, decimals, percentages and ordinals written out in English words."""
    if not _ASCII_DIGIT_RE.search(text):
        return text
    # An inflect engine keeps per-call state (its number arguments): one caller at a time.
    with _INFLECT_LOCK:
        return _spell_out_numbers(text)


def _spell_out_numbers(text: str) -> str:
    text = _COMMA_NUMBER_RE.sub(lambda m: m.group(1).replace(",", ""), text)
    text = _POUNDS_RE.sub(r"\1 pounds", text)
    text = _DOLLARS_RE.sub(_expand_dollars, text)
    text = _FRACTION_RE.sub(_expand_fraction, text)
    text = _DECIMAL_NUMBER_RE.sub(lambda m: m.group(1).replace(".", " point "), text)
    text = _PERCENT_NUMBER_RE.sub(lambda m: m.group(1).replace("%", " percent "), text)
    text = _ORDINAL_RE.sub(lambda m: f" {_inflect.number_to_words(m.group(0))} ", text)
    return _NUMBER_RE.sub(_expand_number, text)


def normalize_english(text: str) -> str:
    """The text espeak is given for an English run: expanded, reduced to words and kept punctuation."""
    text = _ABBREVIATION_RE.sub(lambda m: _ABBREVIATIONS[m.group(1).lower()], text)
    text = spell_out_numbers(text).strip()
    text = ascii_punctuation(text)
    text = _NOT_SPOKEN_RE.sub("", text)
    text = tighten_punctuation(text)
    return _SPACES_RE.sub(" ", text)


def merge_phones(phonemes: str) -> str:
    """Apply the reference's phone merges (t|ɹ → tɹ, ɐ → ɚ, ...) to whole symbols, in order."""
    for source, pattern, replacement in _PHONE_MERGE_RES:
        if source not in phonemes:
            continue
        while pattern.search(phonemes):
            phonemes = pattern.sub(replacement, phonemes)
    return phonemes


def finish_phonemes(espeak_output: str) -> str:
    """Turn espeak's output for a run into the reference's `|`-separated symbol string."""
    phonemes = _PUNCTUATION_RE.sub(r"|\1|", espeak_output)
    phonemes = _REPEATED_BARS_RE.sub("|", phonemes).rstrip("|")
    if phonemes and phonemes[-1] in _FINAL_PHONE_CHARS:
        phonemes += "|_"
    return merge_phones(phonemes)


def point_phonemizer_at_bundled_espeak() -> None:
    """Make phonemizer use the espeak-ng library and voices shipped by `espeakng-loader`."""
    EspeakWrapper.set_library(espeakng_loader.get_library_path())
    EspeakWrapper.set_data_path(espeakng_loader.get_data_path())


class EnglishPhonemizer:
    """espeak-ng en-us behind phonemizer, configured as the reference configures it."""

    def __init__(self) -> None:
        """Load the espeak-ng voice (the bundled library, no system package needed)."""
        point_phonemizer_at_bundled_espeak()
        self._lock = threading.Lock()
        self._backend = EspeakBackend(
            ESPEAK_VOICE,
            punctuation_marks=KEPT_PUNCTUATION,
            preserve_punctuation=True,
            with_stress=False,
            tie=False,
            language_switch="remove-flags",
            words_mismatch="ignore",
            logger=_ESPEAK_LOG,
        )

    def phonemize(self, texts: Sequence[str]) -> list[str]:
        """The `|`-separated phoneme strings of normalized English runs (see `normalize_english`),
        all sent to espeak in one call."""
        if not texts:
            return []
        # espeak-ng keeps global state: one caller at a time.
        with self._lock:
            raw = self._backend.phonemize(list(texts), separator=_SEPARATOR, strip=True, njobs=1)
        return [finish_phonemes(line) for line in raw]
