"""The songsmith command: generate and batch in process, models, and clear one-line errors."""

from __future__ import annotations

import importlib
import io
import json
import os
from pathlib import Path

import pytest
import soundfile

from gateway.cli import main
from gateway.commands.demo import EXAMPLE_LYRICS
from gateway.commands.songs import batch_song
from tests.gateway.songs import LYRICS

ROOT = Path(__file__).resolve().parents[2]


def test_generate_in_process_writes_the_song(demo_models: Path, tmp_path: Path, capsys) -> None:
    lyrics = tmp_path / "lyrics.txt"
    lyrics.write_text(LYRICS, encoding="utf-8")
    output = tmp_path / "out" / "song.flac"
    code = main(
        [
            "generate",
            "--lyrics",
            str(lyrics),
            "--style",
            "folk",
            "-o",
            str(output),
            "--seed",
            "3",
            "--steps",
            "4",
            "--max-secs",
            "4",
            "--stereo",
            "--model-root",
            str(demo_models),
            "-q",
        ]
    )
    assert code == 0
    audio, rate = soundfile.read(io.BytesIO(output.read_bytes()))
    assert rate == 48_000 and audio.shape == (4 * 48_000, 2)
    assert "seed 3" in capsys.readouterr().out


def test_generate_reports_bad_input_in_one_line(demo_models: Path, tmp_path: Path, capsys) -> None:
    lyrics = tmp_path / "lyrics.txt"
    lyrics.write_text("[verse]\n!!!\n", encoding="utf-8")
    code = main(
        [
            "generate",
            "--lyrics",
            str(lyrics),
            "--style",
            "folk",
            "--model-root",
            str(demo_models),
            "-q",
            "-o",
            str(tmp_path / "x.mp3"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("songsmith: error: lyrics: line 2:") and "\n" not in err
    assert main(["generate", "--lyrics", str(tmp_path / "missing.txt"), "--style", "x", "-q"]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["generate", "--lyrics", str(lyrics), "--style", "x", "-o", "song.aiff", "-q"]) == 2


def test_batch_reports_a_broken_line_and_makes_the_rest(demo_models: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "one.txt").write_text("[verse]\nsing a little song", encoding="utf-8")
    lines = [
        {
            "song_name": "one",
            "style_prompt": "folk",
            "lyrics": "one.txt",
            "seed": 1,
            "steps": 4,
            "max_secs": 2,
        },
        "{not json",
        {
            "song_name": "two",
            "style_prompt": "pop",
            "lyrics": "[chorus]\ninline words",
            "steps": 4,
            "max_secs": 2,
        },
        {"song_name": "three", "lyrics": "no style"},
        {"song_name": "four", "style_prompt": "folk", "lyrics": "missing.txt"},
        {"song_name": "five", "style_prompt": "reference.wav", "lyrics": "[verse]\nwords"},
    ]
    jsonl = tmp_path / "songs.jsonl"
    jsonl.write_text("\n".join(json.dumps(x) if isinstance(x, dict) else x for x in lines), encoding="utf-8")
    out = tmp_path / "songs"
    code = main(
        ["batch", str(jsonl), "-o", str(out), "--format", "wav", "--model-root", str(demo_models), "-q"]
    )
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["one.wav", "two.wav"]
    err = capsys.readouterr().err
    assert f"{jsonl}:2: not JSON" in err and f"{jsonl}:4: missing style_prompt" in err
    assert f"{jsonl}:5: lyrics names a file that does not exist: {tmp_path / 'missing.txt'}" in err
    assert f"{jsonl}:6: style_prompt names a file that does not exist: {tmp_path / 'reference.wav'}" in err


def test_the_example_batch_reads_its_lyrics_files() -> None:
    """examples/batch.jsonl names a lyrics file beside it; that file must exist, or the song would be
    refused (a missing file is not sung as text)."""
    batch = ROOT / "examples" / "batch.jsonl"
    lines = batch.read_text(encoding="utf-8").splitlines()
    songs = [batch_song(n, line, batch.parent, Path("out"), "mp3", "") for n, line in enumerate(lines, 1)]
    assert songs[0].request.lyrics == EXAMPLE_LYRICS.read_text(encoding="utf-8")
    assert all("[verse]" in song.request.lyrics for song in songs)


def test_models_demo_and_pull_without_network(tmp_path: Path, capsys) -> None:
    assert main(["models", "demo", "--model-root", str(tmp_path)]) == 0
    assert (tmp_path / "diffrhythm2" / "model.safetensors").is_file()
    assert (tmp_path / "diffrhythm2" / "decoder.bin").is_file()
    assert "noise" in capsys.readouterr().out
    unreachable = "http://127.0.0.1:9"
    assert (
        main(
            [
                "models",
                "pull",
                "diffrhythm2",
                "--model-root",
                str(tmp_path / "real"),
                "--endpoint",
                unreachable,
            ]
        )
        == 1
    )
    assert "cannot reach the Hugging Face Hub" in capsys.readouterr().err


def test_up_without_a_model_says_what_to_do(tmp_path: Path, capsys) -> None:
    assert main(["up", "--model-root", str(tmp_path / "none")]) == 1
    assert "songsmith models demo" in capsys.readouterr().err


def test_every_component_can_be_served(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "nonsense"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(("preset", "seen"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_serve_makes_openmp_threads_sleep_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch, preset: str | None, seen: str
) -> None:
    """The policy must be in the environment before the stage module (and torch) is imported."""
    observed: dict[str, object] = {}

    class Stage:
        @staticmethod
        def main(flags: list[str]) -> None:
            observed["policy"] = os.environ.get("OMP_WAIT_POLICY")
            observed["flags"] = flags

    def import_stage(name: str) -> object:
        if not name.endswith(".server"):
            return real_import(name)
        observed["policy_at_import"] = os.environ.get("OMP_WAIT_POLICY")
        observed["module"] = name
        return Stage

    real_import = importlib.import_module

    if preset is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", preset)
    monkeypatch.setattr("gateway.commands.serve.importlib.import_module", import_stage)
    assert main(["serve", "vocoder", "--port", "0"]) == 0
    assert observed == {
        "policy_at_import": seen,
        "module": "services.vocoder.server",
        "policy": seen,
        "flags": ["--port", "0"],
    }
