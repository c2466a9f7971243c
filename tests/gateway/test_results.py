"""Results written while the song is made: complete files only, nothing left of a failed one, and a
full or unwritable folder reported as a status without the server's paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.results import FolderResults
from services.runtime.errors import NotFoundError, ResourceExhaustedError, UnavailableError


def test_a_result_appears_only_when_committed(tmp_path: Path) -> None:
    results = FolderResults(tmp_path)
    writer = results.create("song.wav")
    writer.write_at(0, b"RIFF....")
    writer.write_at(8, b"rest of the file")
    writer.write_at(4, b"SIZE")
    with pytest.raises(NotFoundError):
        list(results.read_chunks("song.wav", 4))
    writer.commit()
    assert list(results.read_chunks("song.wav", 10)) == [
        (0, b"RIFFSIZEre"),
        (10, b"st of the "),
        (20, b"file"),
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["song.wav"]


def test_an_aborted_result_leaves_nothing(tmp_path: Path) -> None:
    results = FolderResults(tmp_path)
    writer = results.create("song.wav")
    writer.write_at(0, b"half a song")
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_a_full_volume_is_resource_exhausted_without_paths(tmp_path: Path, monkeypatch) -> None:
    """A partial file that lands on /dev/full fails its writes with ENOSPC, as a full disk does."""
    results = FolderResults(tmp_path / "results")
    real_open = Path.open

    def onto_dev_full(path: Path, mode: str = "r", *args, **kwargs):
        if path.name.endswith(".partial"):
            path.symlink_to("/dev/full")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", onto_dev_full)
    writer = results.create("song.wav")
    monkeypatch.undo()
    with pytest.raises(ResourceExhaustedError) as caught:
        writer.write_at(0, os.urandom(1 << 20))
        writer.commit()
    writer.abort()
    assert "No space left on device" in caught.value.message and str(tmp_path) not in caught.value.message
    assert caught.value.retry_after_s > 0
    assert list((tmp_path / "results").iterdir()) == []


def test_an_unwritable_folder_is_unavailable_without_paths(tmp_path: Path) -> None:
    results = FolderResults(tmp_path / "results")
    (tmp_path / "results").rmdir()
    (tmp_path / "results").write_text("a file where the folder was")
    with pytest.raises(UnavailableError) as caught:
        results.create("song.wav")
    assert caught.value.message == "the gateway cannot write its results volume (Not a directory)"
