"""`songsmith style embed`: vectors identical to the reference, one-line errors with exit code 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.cli import main
from tests.style.conftest import CHECKPOINT, FIXTURE, expected


def run(argv: list[str]) -> int:
    """The `songsmith` console script's exit code for `argv`."""
    return main(argv)


def test_embed_text(tmp_path: Path, case, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "text.npy"
    prompt = case["text"]["prompts"][2]
    assert run(["style", "embed", "--model-dir", str(CHECKPOINT), "--text", prompt, "-o", str(out)]) == 0
    vector = np.load(out)
    assert vector.dtype == np.float32 and vector.shape == (512,)
    np.testing.assert_allclose(vector, expected("text_single")[2], rtol=0, atol=1e-5)
    assert "wrote" in capsys.readouterr().out


def test_embed_whole_recording(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "audio.npy"
    wav = FIXTURE / "audio" / "clip_c_synth.wav"
    assert run(["style", "embed", "--model-dir", str(CHECKPOINT), "--audio", str(wav), "-o", str(out)]) == 0
    np.testing.assert_allclose(np.load(out), expected("audio_clip_c_synth_embedding"), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (["--text", ""], "songsmith: error: prompt: the prompt is empty"),
        (["--audio", "missing.wav"], "songsmith: error: cannot read"),
        (["--audio", "garbage.wav"], "songsmith: error: data: not decodable"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, capsys, source: list[str], message: str) -> None:
    (tmp_path / "garbage.wav").write_bytes(b"not a recording")
    source = [str(tmp_path / s) if s.endswith(".wav") else s for s in source]
    out = tmp_path / "x.npy"
    assert run(["style", "embed", "--model-dir", str(CHECKPOINT), *source, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert not out.exists()


def test_missing_model_is_one_line(tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "x.npy")
    assert run(["style", "embed", "--model-dir", str(tmp_path / "none"), "--text", "x", "-o", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith("songsmith: error: model folder") and err.count("\n") == 1
