"""`songsmith lyrics tokenize`: the table for people, the JSON object for programs, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import main
from tests.tokenizer.conftest import SONG


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lyrics = tmp_path / "song.lrc"
    lyrics.write_text(SONG["lyrics"].replace("[verse]", "[00:03.50][verse]"), encoding="utf-8")
    assert main(["lyrics", "tokenize", str(lyrics), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"tokens", "lines", "warnings"}
    assert printed["tokens"] == SONG["tokens"]
    assert printed["warnings"] == ["line 9: unknown structure tag [bridge-x] dropped"]
    verse, lyric = printed["lines"][1], printed["lines"][2]
    assert verse == {
        "number": 3,
        "text": "[verse]",
        "kind": "tag",
        "phonemes": "",
        "tokens": [503],
        "timestamp_seconds": 3.5,
    }
    assert set(lyric) == {"number", "text", "kind", "phonemes", "tokens"}
    assert lyric["kind"] == "lyric" and lyric["number"] == 4
    flat = [500, 511]
    for line in printed["lines"]:
        flat += [*line["tokens"], 511]
    assert flat == SONG["tokens"]


def test_table_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lyrics = tmp_path / "song.txt"
    lyrics.write_bytes(("\ufeff" + SONG["lyrics"]).replace("\n", "\r\n").encode("utf-8"))
    assert main(["lyrics", "tokenize", str(lyrics)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["1", "[intro]", "tag", "502"]
    neon = next(row for row in out if "Neon rivers" in row)
    assert neon.split()[:2] == ["4", "Neon"] and "n iː ɑː n _" in neon
    assert any("我在等你" in row and "uo↓↑" in row for row in out)
    assert f"9 lines, {len(SONG['tokens'])} tokens" in out
    assert "warning: line 9: unknown structure tag [bridge-x] dropped" in out


def test_unreadable_line_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lyrics = tmp_path / "bad.txt"
    lyrics.write_text("hello\n\nПривет\n", encoding="utf-8")
    assert main(["lyrics", "tokenize", str(lyrics), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("songsmith: error: line 3: no Mandarin characters or English letters")
    assert len(captured.err.strip().splitlines()) == 1


def test_unreadable_file_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lyrics", "tokenize", str(tmp_path / "missing.txt")]) == 2
    assert capsys.readouterr().err.startswith("songsmith: error: cannot read")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café".encode("latin-1"))
    assert main(["lyrics", "tokenize", str(latin1)]) == 2
    assert "is not UTF-8 text" in capsys.readouterr().err
