"""bench/gpu.py runs every case at tiny shapes on CPU, so the GPU benchmark cannot rot."""

from __future__ import annotations

import pytest
import torch

from bench.gpu import CASES, main


def test_every_case_runs_at_tiny_shapes_and_prints_its_rows(capsys: pytest.CaptureFixture) -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        argv = ["--tiny", "--device", "cpu", "--dtype", "float32", "--counts", "1,3"]
        argv += ["--seconds", "6", "--steps", "3", "--compile-backend", "eager"]
        assert main(argv) == 0
    finally:
        torch.set_num_threads(previous)
    out = capsys.readouterr().out
    assert out.startswith("device: ") and "(cpu)" in out.splitlines()[0]
    cells = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ")]
    rows = [row for row in cells if row[0].strip() in CASES]
    assert sorted((cells[0].strip(), int(cells[1])) for cells in rows) == sorted(
        (case, n) for case in CASES for n in (1, 3)
    )
    for cells in rows:
        seconds_per_song, first_audio, songs_per_hour = float(cells[3]), float(cells[4]), float(cells[6])
        assert 0 < first_audio <= seconds_per_song and songs_per_hour > 0
        assert cells[5].strip() == "nan"  # no GPU memory on CPU
        assert cells[7].strip().endswith("x")
    song_seconds = {cells[0].strip(): float(cells[2]) for cells in rows}
    assert song_seconds["diffrhythm2"] == 6.0
    assert song_seconds["diffrhythm1"] == 96.0  # 2067 frames: v1's shortest full-model song


def test_unknown_cases_are_refused(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["--cases", "diffrhythm2,nope", "--tiny", "--device", "cpu"])
    assert "unknown cases: nope" in capsys.readouterr().err
