"""Mandarin runs to IPA with tone marks, symbol for symbol as the reference front end reads them.

Steps: spaces become `_`, digits are read out in Chinese (cn2an), punctuation is normalized and
everything that is neither a CJK character nor kept punctuation is dropped; jieba splits words, and
一/不/儿 are merged with their neighbours; each word's pinyin comes from the lexicon, except
polyphonic single characters (and words missing from the lexicon), which the polyphone BERT decides,
with pypinyin as the last fallback; tone sandhi is applied; pinyin becomes bopomofo and bopomofo
becomes IPA-like symbols with tone arrows (→ ↑ ↓↑ ↓).
"""

from __future__ import annotations

import logging
import re
import unicodedata
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import cn2an

from services.tokenizer.g2p.assets import FrontEndData
from services.tokenizer.g2p.polyphone import MAX_TEXT_CHARS, PolyphoneModel
from services.tokenizer.g2p.punctuation import ascii_punctuation, tighten_punctuation

with warnings.catch_warnings():
    # jieba 0.42 imports the deprecated pkg_resources; nothing we can act on.
    warnings.simplefilter("ignore", UserWarning)
    import jieba

# cn2an warns and leaves the digits when a number has more than 16 of them; the digits are then
# dropped and reported as not sung, so its warning is noise.
warnings.filterwarnings("ignore", message="超出数据范围", category=UserWarning)

_WHITESPACE_RE = re.compile(r"\s")
_WHITESPACES_RE = re.compile(r"\s+")
_DIGIT_RE = re.compile(r"\d")
_NOT_READ_RE = re.compile(r"[^\u4e00-\u9fff\s_,\.\?!;:\'…]")
_CJK_RE = re.compile("[\u4e00-\u9fff]")
_BARE_BOPOMOFO_RE = re.compile(r"([\u3105-\u3129])$")

# Tone digit of the lexicon's pinyin → bopomofo tone mark (first tone has none yet).
_TONE_MARKS = {"0": "˙", "5": "˙", "1": "", "2": "ˊ", "3": "ˇ", "4": "ˋ"}
_MARKED_TONES = "˙ˊˇˋ"
_NOT_ERHUA_WORDS = frozenset({"女儿", "老儿", "男儿", "少儿", "小儿"})
_CHINESE_DIGITS = frozenset("零一二三四五六七八九十")
_YI_PUNCTUATION = frozenset("：，；。？！“”‘’':,;.?!()（）{}【】[]-~`、 ")
_YI_DATE_PREFIXES = ("一月", "一日", "一号")

# Bopomofo → IPA-like symbols, applied in this order as plain replacements; a leading "|" starts a
# new symbol, and the tone marks close one.
_BOPOMOFO_TO_IPA = (
    ("ㄅㄛ", "p⁼wo"),
    ("ㄆㄛ", "pʰwo"),
    ("ㄇㄛ", "mwo"),
    ("ㄈㄛ", "fwo"),
    ("ㄧㄢ", "|jɛn"),
    ("ㄩㄢ", "|ɥæn"),
    ("ㄧㄣ", "|in"),
    ("ㄩㄣ", "|ɥn"),
    ("ㄧㄥ", "|iŋ"),
    ("ㄨㄥ", "|ʊŋ"),
    ("ㄩㄥ", "|jʊŋ"),
    ("ㄧㄚ", "|ia"),
    ("ㄧㄝ", "|iɛ"),
    ("ㄧㄠ", "|iɑʊ"),
    ("ㄧㄡ", "|ioʊ"),
    ("ㄧㄤ", "|iɑŋ"),
    ("ㄨㄚ", "|ua"),
    ("ㄨㄛ", "|uo"),
    ("ㄨㄞ", "|uaɪ"),
    ("ㄨㄟ", "|ueɪ"),
    ("ㄨㄢ", "|uan"),
    ("ㄨㄣ", "|uən"),
    ("ㄨㄤ", "|uɑŋ"),
    ("ㄩㄝ", "|ɥɛ"),
    ("ㄅ", "p⁼"),
    ("ㄆ", "pʰ"),
    ("ㄇ", "m"),
    ("ㄈ", "f"),
    ("ㄉ", "t⁼"),
    ("ㄊ", "tʰ"),
    ("ㄋ", "n"),
    ("ㄌ", "l"),
    ("ㄍ", "k⁼"),
    ("ㄎ", "kʰ"),
    ("ㄏ", "x"),
    ("ㄐ", "tʃ⁼"),
    ("ㄑ", "tʃʰ"),
    ("ㄒ", "ʃ"),
    ("ㄓ", "ts`⁼"),
    ("ㄔ", "ts`ʰ"),
    ("ㄕ", "s`"),
    ("ㄖ", "ɹ`"),
    ("ㄗ", "ts⁼"),
    ("ㄘ", "tsʰ"),
    ("ㄙ", "|s"),
    ("ㄚ", "|a"),
    ("ㄛ", "|o"),
    ("ㄜ", "|ə"),
    ("ㄝ", "|ɛ"),
    ("ㄞ", "|aɪ"),
    ("ㄟ", "|eɪ"),
    ("ㄠ", "|ɑʊ"),
    ("ㄡ", "|oʊ"),
    ("ㄢ", "|an"),
    ("ㄣ", "|ən"),
    ("ㄤ", "|ɑŋ"),
    ("ㄥ", "|əŋ"),
    ("ㄦ", "əɹ"),
    ("ㄧ", "|i"),
    ("ㄨ", "|u"),
    ("ㄩ", "|ɥ"),
    ("ˉ", "→|"),
    ("ˊ", "↑|"),
    ("ˇ", "↓↑|"),
    ("ˋ", "↓|"),
    ("˙", "|"),
)
# Syllables with an empty final after a retroflex or dental sibilant (zhi, shi, si, ...) get ɹ.
_RETROFLEX_VOWEL_RE = re.compile("([sɹ]`[⁼ʰ]?)([→↓↑ ]+|$)")
_DENTAL_VOWEL_RE = re.compile("([s][⁼ʰ]?)([→↓↑ ]+|$)")
_NOT_A_SYMBOL_RE = re.compile(r"^\||[^\w\s_,\.\?!;:\'…\|→↓↑⁼ʰ`]")
_PUNCTUATION_RE = re.compile(r"([,\.\?!;:\'…])")
_REPEATED_BARS_RE = re.compile(r"\|+")


def _pypinyin_bopomofo(word: str) -> list[str]:
    """pypinyin's bopomofo reading of a word, the fallback for the two lexicon entries whose pinyin
    the bopomofo table lacks (第六个空, 第六空). Imported on first use: 0.4 s of start-up otherwise."""
    from pypinyin import BOPOMOFO, lazy_pinyin

    return lazy_pinyin(word, BOPOMOFO)


class RunTooLongError(ValueError):
    """A Mandarin run is longer, once numbers are written out, than the polyphone model can read."""


@dataclass(frozen=True)
class PreparedRun:
    """A normalized Mandarin run split into words; `needs_model` when the polyphone model must read it;
    `dropped` holds the letters and digits normalization left out."""

    text: str
    words: list[str]
    needs_model: bool
    dropped: str


def normalize_mandarin(run: str, word_separators: bool = True) -> tuple[str, str]:
    """The run as the reference reads it (digits in Chinese, only CJK and punctuation), and the
    letters and digits that were dropped on the way, so callers can say what is not sung.

    With `word_separators` (DiffRhythm 2) every space becomes the `_` word separator; without
    (DiffRhythm v1) the run is stripped and its spaces simply vanish.
    """
    text = _WHITESPACE_RE.sub("_", run) if word_separators else run.strip()
    if _DIGIT_RE.search(text):
        text = cn2an.transform(text, "an2cn")
    text = ascii_punctuation(text)
    text = _WHITESPACES_RE.sub("", text)
    dropped = "".join(char for char in _NOT_READ_RE.findall(text) if unicodedata.category(char)[0] in "LN")
    text = _NOT_READ_RE.sub("", text)
    return tighten_punctuation(text), dropped


def merge_yi(words: list[str]) -> list[str]:
    """Join 一 with its neighbours: `X 一 X` becomes `X一X`, then 一 joins the word after it.

    Mirrors the reference exactly, including its use of the original word index into the merged
    list, since the model was trained on that reading.
    """
    merged: list[str] = []
    for index, word in enumerate(words):
        repeated_around = 0 < index < len(words) - 1 and word == "一" and words[index - 1] == words[index + 1]
        if repeated_around:
            if index - 1 < len(merged):
                merged[index - 1] = merged[index - 1] + "一" + merged[index - 1]
            else:
                merged.extend((word, words[index + 1]))
        elif not (index >= 2 and words[index - 1] == "一" and words[index - 2] == word):
            merged.append(word)
    joined: list[str] = []
    for word in merged:
        if joined and joined[-1] == "一":
            joined[-1] += word
        else:
            joined.append(word)
    return joined


def merge_bu(words: list[str]) -> list[str]:
    """Attach a standalone 不 to the word after it (a 不 with no word after it is lost, as upstream)."""
    merged: list[str] = []
    previous = ""
    for word in words:
        if word != "不":
            if previous == "不":
                word = previous + word
            merged.append(word)
        previous = word
    return merged


def merge_er(words: list[str]) -> list[str]:
    """Attach a standalone 儿 to the word before it."""
    merged: list[str] = []
    for word in words:
        if merged and word == "儿":
            merged[-1] += word
        else:
            merged.append(word)
    return merged


def change_tone(bopomofo: str, tone: str) -> str:
    """Replace the syllable's tone mark with `tone` (append it when the syllable has none)."""
    if bopomofo[-1] in _MARKED_TONES:
        return bopomofo[:-1] + tone
    return bopomofo + tone


def third_tone_sandhi(word: str, syllables: list[str]) -> None:
    """Two third tones in a row: the first rises (the reference's three-syllable variant kept as is)."""
    if len(word) == 3 and all(syllables[i][-1] == "ˇ" for i in (0, 1, -1)):
        syllables[0] += "ˊ"
        syllables[1] += "ˊ"
    if len(word) == 2 and syllables[0][-1] == "ˇ" and syllables[-1][-1] == "ˇ":
        syllables[0] = syllables[0][:-1] + "ˊ"


def bu_sandhi(word: str, syllables: list[str]) -> None:
    """不 is neutral in X不X and rises before a fourth tone."""
    if "不" not in word or set(word) == {"不"} or word == "不字":
        return
    if len(word) == 3 and word[1] == "不" and syllables[1][:-1] == "ㄅㄨ":
        syllables[1] = syllables[1][:-1] + "˙"
        return
    for index, char in enumerate(word):
        if (
            char == "不"
            and index + 1 < len(syllables)
            and index + 1 < len(word)
            and syllables[index + 1]
            and syllables[index + 1][-1] == "ˋ"
        ):
            syllables[index] = syllables[index][:-1] + "ˊ"


def yi_sandhi(word: str, syllables: list[str]) -> None:
    """一 in numbers, ordinals, dates, X一X, and before fourth or other tones."""
    if "一" not in word:
        return
    if any(char.isnumeric() for char in word if char != "一"):
        for index, char in enumerate(word):
            if index == 0 and char == "一" and len(word) > 1 and word[1] not in _CHINESE_DIGITS:
                rises = len(syllables[0]) > 0 and syllables[1][-1] in ("ˋ", "˙")
                syllables[0] = change_tone(syllables[0], "ˊ" if rises else "ˋ")
            elif char == "一":
                syllables[index] = change_tone(syllables[index], "")
    elif len(word) == 3 and word[1] == "一" and word[0] == word[-1]:
        syllables[1] = change_tone(syllables[1], "˙")
    elif word.startswith("第一"):
        syllables[1] = change_tone(syllables[1], "")
    elif word.startswith(_YI_DATE_PREFIXES):
        syllables[0] = change_tone(syllables[0], "")
    else:
        for index, char in enumerate(word):
            if char != "一" or index + 1 >= len(word):
                continue
            if len(syllables) > index + 1 and syllables[index + 1] and syllables[index + 1][-1] == "ˋ":
                syllables[index] = change_tone(syllables[index], "ˊ")
            elif word[index + 1] not in _YI_PUNCTUATION:
                syllables[index] = change_tone(syllables[index], "ˋ")


def er_sandhi(word: str, syllables: list[str]) -> None:
    """A word-final 儿 (erhua) is neutral, except in words where 儿 means child."""
    if len(word) > 1 and word[-1] == "儿" and word not in _NOT_ERHUA_WORDS:
        syllables[-1] = change_tone(syllables[-1], "˙")


def bopomofo_to_ipa(text: str) -> str:
    """Rewrite bopomofo syllables (with tone marks) as `|`-separated IPA-like symbols."""
    for source, target in _BOPOMOFO_TO_IPA:
        text = text.replace(source, target)
    text = _RETROFLEX_VOWEL_RE.sub(r"\1ɹ\2", text)
    text = _DENTAL_VOWEL_RE.sub(r"\1ɹ\2", text)
    text = _NOT_A_SYMBOL_RE.sub("", text)
    text = _PUNCTUATION_RE.sub(r"|\1|", text)
    return _REPEATED_BARS_RE.sub("|", text).rstrip("|")


class MandarinReader:
    """Reads Mandarin runs into phoneme strings, sending all polyphone questions to the model at once."""

    def __init__(self, data: FrontEndData, polyphone: PolyphoneModel) -> None:
        """Build the word segmenter (jieba's dictionary loads here, not on the first line)."""
        self._data = data
        self._polyphone = polyphone
        jieba.setLogLevel(logging.WARNING)
        self._segmenter = jieba.Tokenizer()
        self._segmenter.initialize()

    def _bert_decides(self, word: str) -> bool:
        return word not in self._data.lexicon or word in self._data.polyphonic_chars

    def prepare(self, run: str, word_separators: bool = True) -> PreparedRun:
        """Normalize and split a run into words (see `normalize_mandarin` for `word_separators`);
        raises RunTooLongError past the model's input size."""
        text, dropped = normalize_mandarin(run, word_separators)
        if len(text) > MAX_TEXT_CHARS:
            raise RunTooLongError(
                f"{len(text)} characters once numbers are written out, more than the {MAX_TEXT_CHARS} "
                "the Mandarin reader accepts"
            )
        words = merge_er(merge_bu(merge_yi(self._segmenter.lcut(text, cut_all=False))))
        polyphonic = self._data.polyphonic_chars
        needs_model = any(
            self._bert_decides(word) and any(char in polyphonic for char in word) for word in words
        )
        return PreparedRun(text, words, needs_model, dropped)

    def phonemize(self, prepared: Sequence[PreparedRun]) -> list[str]:
        """The `|`-separated phoneme strings of prepared runs; one model pass for all of them."""
        readings = self._polyphone.readings([run.text for run in prepared if run.needs_model])
        return [self._run_to_ipa(run, readings.get(run.text)) for run in prepared]

    def _syllable(self, pinyin: str) -> str:
        return self._data.pinyin_to_bopomofo[pinyin[:-1]] + _TONE_MARKS[pinyin[-1]]

    def _word_syllables(self, word: str, offset: int, readings: list[str] | None) -> list[str]:
        lexicon = self._data.lexicon
        syllables: list[str] = []
        if not self._bert_decides(word):
            for pinyin in lexicon[word].split(" "):
                if pinyin[:-1] in self._data.pinyin_to_bopomofo and pinyin[-1] in _TONE_MARKS:
                    syllables.append(self._syllable(pinyin))
                else:
                    syllables.extend(_pypinyin_bopomofo(word))
            return syllables
        for index, char in enumerate(word):
            if char in self._data.polyphonic_chars and readings is not None:
                # A label reads like "中{zhong4}": the pinyin sits between the braces.
                syllables.append(self._syllable(readings[offset + index][2:-1]))
            elif char in lexicon:
                syllables.append(self._syllable(lexicon[char]))
            else:
                syllables.append(char)
        return syllables

    def _run_to_ipa(self, run: PreparedRun, readings: list[str] | None) -> str:
        pieces: list[str] = []
        offset = 0
        for word in run.words:
            syllables = self._word_syllables(word, offset, readings)
            offset += len(word)
            third_tone_sandhi(word, syllables)
            bu_sandhi(word, syllables)
            yi_sandhi(word, syllables)
            er_sandhi(word, syllables)
            if not _CJK_RE.search(word):
                pieces.append("|" + word)
                continue
            marked = "|".join(_BARE_BOPOMOFO_RE.sub(r"\1ˉ", syllable) for syllable in syllables)
            pieces.append("|" + marked if pieces else marked)
        return bopomofo_to_ipa("".join(pieces))
