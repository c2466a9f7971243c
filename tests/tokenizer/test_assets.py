"""Where the front end's data comes from: the installed package by default, or `data_dir`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from services.runtime.errors import FailedPreconditionError
from services.tokenizer.engine import TokenizerEngine
from services.tokenizer.g2p.assets import VOCAB_FILE, installed_data_dir, resolve_data_dir
from tests.tokenizer.conftest import ENGLISH

VOCAB_SHA256 = "0f5c44e05f79df8ae4fd77d7772950436a8bacc83d134fdf0ae3c72412b5676a"


def test_installed_package_holds_the_reference_vocabulary() -> None:
    vocab = installed_data_dir() / VOCAB_FILE
    assert hashlib.sha256(vocab.read_bytes()).hexdigest() == VOCAB_SHA256
    assert resolve_data_dir(None) == installed_data_dir()


def test_missing_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "g2p").mkdir()
    (tmp_path / VOCAB_FILE).write_text("{}", encoding="utf-8")
    with pytest.raises(FailedPreconditionError) as caught:
        resolve_data_dir(tmp_path)
    assert "sources/chinese_lexicon.txt" in caught.value.message
    assert VOCAB_FILE not in caught.value.message


def test_data_dir_overrides_the_installed_package(tmp_path: Path) -> None:
    installed = installed_data_dir()
    (tmp_path / "sources").symlink_to(installed / "sources", target_is_directory=True)
    (tmp_path / "g2p").mkdir()
    vocab = json.loads((installed / VOCAB_FILE).read_text(encoding="utf-8"))
    vocab["vocab"]["_"] = 999  # the word boundary gets another id
    (tmp_path / VOCAB_FILE).write_text(json.dumps(vocab), encoding="utf-8")
    case = ENGLISH[0]
    tokens = TokenizerEngine.load(data_dir=str(tmp_path)).tokenize(case["line"]).lines[0].tokens
    assert tokens == [1000 if token == 5 else token for token in case["tokens"]]
    assert 5 in case["tokens"]
