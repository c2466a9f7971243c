"""`songsmith chart generate` through the real console entry point, in the acceptance check's form."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gateway.cli import main
from tests.chart.conftest import latents_tolerance


def _generate(fixture_dir: Path, *extra: str, audio: Path | None = None) -> int:
    song = audio or fixture_dir / "song.wav"
    return main(["chart", "generate", "--model-dir", str(fixture_dir), "--audio", str(song), *extra])


def _section(text: str, name: str) -> list[str]:
    lines = text.split("\n")
    start = lines.index(name) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("[")), len(lines))
    return [line for line in lines[start:end] if line]


def test_the_reference_case_from_the_command_line(
    fixture_dir: Path, case: dict, tmp_path: Path, capsys
) -> None:
    features = [arg for name, text in case["features"].items() for arg in ("--feature", f"{name}={text}")]
    code = _generate(
        fixture_dir,
        "--seed", "1234", "--steps", "12", "--cfg", "5.0", *features,
        "-o", str(tmp_path / "chart.osu"), "--latents-out", str(tmp_path / "lat.npy"),
    )  # fmt: skip
    assert code == 0
    ours = (tmp_path / "chart.osu").read_text()
    expected = (fixture_dir / "expected.osu").read_text()
    assert _section(ours, "[HitObjects]") == _section(expected, "[HitObjects]")
    (timing,) = _section(ours, "[TimingPoints]")
    (reference_timing,) = _section(expected, "[TimingPoints]")
    for ours_value, reference_value in zip(
        timing.split(",")[:2], reference_timing.split(",")[:2], strict=True
    ):
        assert abs(float(ours_value) - float(reference_value)) <= 1e-4
    assert "Mode: 3" in ours and "CircleSize: 4" in ours
    latents = np.load(tmp_path / "lat.npy")
    reference = np.load(fixture_dir / "expected_latents.npy")
    assert latents.dtype == np.float32 and latents.shape == (16, 32)
    assert np.abs(latents - reference).max() <= latents_tolerance(reference)
    assert "wrote" in capsys.readouterr().out


def test_several_charts_go_into_a_folder(fixture_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "charts"
    code = _generate(
        fixture_dir,
        "--seed", "7", "--steps", "2", "--cfg", "3", "--count", "2", "-o", str(folder),
        "--latents-out", str(tmp_path / "lat.npy"), "--title", "Morning Light", "--artist", "Songsmith",
    )  # fmt: skip
    assert code == 0
    names = sorted(path.name for path in folder.iterdir())
    assert names == [
        "Songsmith - Morning Light (MuG Diffusion v0) [AI v1].osu",
        "Songsmith - Morning Light (MuG Diffusion v0) [AI v2].osu",
    ]
    assert np.load(tmp_path / "lat.npy").shape == (2, 16, 32)
    assert "Title: Morning Light" in (folder / names[0]).read_text()


def test_errors_are_one_line(fixture_dir: Path, tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "chart.osu")
    assert _generate(fixture_dir, "--feature", "sr=9", "-o", out) == 2
    assert "feature.sr: must be a number from 1 to 8" in capsys.readouterr().err
    assert _generate(fixture_dir, "--steps", "0", "-o", out) == 2
    assert "options.steps" in capsys.readouterr().err
    assert _generate(fixture_dir, "--count", "2", "-o", out) == 2
    assert "names a folder" in capsys.readouterr().err
    assert _generate(fixture_dir, "-o", out, audio=tmp_path / "absent.wav") == 2
    assert "cannot read" in capsys.readouterr().err
    (tmp_path / "noise.wav").write_bytes(b"not audio")
    assert _generate(fixture_dir, "-o", out, audio=tmp_path / "noise.wav") == 2
    assert "not decodable" in capsys.readouterr().err
    assert _generate(tmp_path, "-o", out, audio=fixture_dir / "song.wav") == 2
    err = capsys.readouterr().err
    assert err.startswith("songsmith: error:") and "model.ckpt" in err and "Traceback" not in err
    assert not (tmp_path / "chart.osu").exists()
