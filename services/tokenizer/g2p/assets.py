"""The lyric front end's data files: where they live and how each one is read.

The files ship inside the PyPI package `diffrhythm2-fork` (installed without its dependencies, data
only). We never import that package; we only read its files, from the installed copy by default or
from a folder with the same layout named by the `data_dir` setting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from services.runtime.errors import FailedPreconditionError

DATA_PACKAGE = "diffrhythm2-fork"
PACKAGE_FOLDER = "diffrhythm2/g2p"

VOCAB_FILE = "g2p/vocab.json"
LEXICON_FILE = "sources/chinese_lexicon.txt"
PINYIN_TO_BOPOMOFO_FILE = "sources/pinyin_2_bpmf.txt"
POLYPHONE_FOLDER = "sources/g2p_chinese_model"
POLYPHONE_MODEL_FILE = f"{POLYPHONE_FOLDER}/poly_bert_model.onnx"
POLYPHONE_VOCAB_FILE = f"{POLYPHONE_FOLDER}/vocab.txt"
POLYPHONE_CHARS_FILE = f"{POLYPHONE_FOLDER}/polychar.txt"
POLYPHONE_CLASSES_FILE = f"{POLYPHONE_FOLDER}/polydict.json"

REQUIRED_FILES = (
    VOCAB_FILE,
    LEXICON_FILE,
    PINYIN_TO_BOPOMOFO_FILE,
    POLYPHONE_MODEL_FILE,
    POLYPHONE_VOCAB_FILE,
    POLYPHONE_CHARS_FILE,
    POLYPHONE_CLASSES_FILE,
)


def installed_data_dir() -> Path:
    """The front end's data folder inside the installed `diffrhythm2-fork` package."""
    try:
        distribution = metadata.distribution(DATA_PACKAGE)
    except metadata.PackageNotFoundError as exc:
        raise FailedPreconditionError(
            f"the lyric front end data package {DATA_PACKAGE} is not installed "
            f"(pip install --no-deps {DATA_PACKAGE}==20260128) and no data_dir was given"
        ) from exc
    return Path(str(distribution.locate_file(PACKAGE_FOLDER)))


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """The data folder to use: `data_dir` when given, else the installed package's; checked complete."""
    root = Path(data_dir) if data_dir else installed_data_dir()
    missing = [name for name in REQUIRED_FILES if not (root / name).is_file()]
    if missing:
        raise FailedPreconditionError(f"lyric front end data folder {root} lacks {', '.join(missing)}")
    return root


@dataclass(frozen=True)
class FrontEndData:
    """Every table the front end reads, loaded once."""

    root: Path
    phoneme_ids: dict[str, int]
    lexicon: dict[str, str]
    pinyin_to_bopomofo: dict[str, str]
    polyphonic_chars: frozenset[str]
    polyphone_classes: dict[int, str]
    bert_vocab: dict[str, int]

    @classmethod
    def load(cls, data_dir: str | Path | None = None) -> FrontEndData:
        """Read all tables from `data_dir` (default: the installed data package)."""
        root = resolve_data_dir(data_dir)
        return cls(
            root=root,
            phoneme_ids=read_phoneme_vocab(root / VOCAB_FILE),
            lexicon=read_tab_table(root / LEXICON_FILE),
            pinyin_to_bopomofo=read_tab_table(root / PINYIN_TO_BOPOMOFO_FILE),
            polyphonic_chars=read_polyphonic_chars(root / POLYPHONE_CHARS_FILE),
            polyphone_classes=read_polyphone_classes(root / POLYPHONE_CLASSES_FILE),
            bert_vocab=read_bert_vocab(root / POLYPHONE_VOCAB_FILE),
        )

    @property
    def vocab_path(self) -> Path:
        """Path of the phoneme vocabulary (`vocab.json`)."""
        return self.root / VOCAB_FILE

    @property
    def polyphone_model(self) -> Path:
        """Path of the polyphone classifier (an ONNX BERT)."""
        return self.root / POLYPHONE_MODEL_FILE


def read_phoneme_vocab(path: Path) -> dict[str, int]:
    """The phoneme symbol → id table of `vocab.json` (ids as stored, before the model's +1 shift)."""
    return dict(json.loads(path.read_text(encoding="utf-8"))["vocab"])


def read_tab_table(path: Path) -> dict[str, str]:
    """A `key<TAB>value` file as a dict; a later duplicate key wins, as in the reference."""
    table: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").split("\n"):
        if not raw:
            continue
        key, value = raw.strip().split("\t")
        table[key] = value
    return table


def read_polyphonic_chars(path: Path) -> frozenset[str]:
    """The characters whose reading the polyphone model decides (one per line)."""
    return frozenset(line for line in path.read_text(encoding="utf-8").split("\n") if line)


def read_polyphone_classes(path: Path) -> dict[int, str]:
    """Class number (1-based) → labelled reading such as `中{zhong4}`."""
    return {int(key): value for key, value in json.loads(path.read_text(encoding="utf-8")).items()}


def read_bert_vocab(path: Path) -> dict[str, int]:
    """The BERT word-piece vocabulary: token → line number, a later duplicate winning."""
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return {token: index for index, token in enumerate(lines)}
