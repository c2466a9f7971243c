"""MusicGen from the `songsmith` command line: `models demo` writes the MusicGen demo model,
`generate` makes songs with it in process (stereo models in stereo, melody models from a recording,
the sampling flags, --seconds) and through `songsmith up`."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from gateway.cli import main
from gateway.model_store import MUSICGEN_DEMO, write_musicgen_demo
from gateway.models import discover
from services.diffusion.musicgen.demo import write_demo_model
from tests.helpers import free_port_block

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "lofi hip hop, mellow piano"
SAMPLE_RATE = 32000


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model root with a stereo and a melody MusicGen demo model."""
    root = tmp_path_factory.mktemp("models")
    write_demo_model(root / "musicgen-stereo-demo", "stereo", name="musicgen-stereo-demo")
    write_demo_model(root / "musicgen-melody-demo", "melody", name="musicgen-melody-demo")
    return root


def generate(root: Path, output: Path, *flags: str) -> int:
    """`songsmith generate --local` with the given flags."""
    return main(["generate", "--local", "--model-root", str(root), "-o", str(output), "-q", *flags])


def test_models_demo_writes_the_musicgen_demo(tmp_path: Path, capsys) -> None:
    assert main(["models", "demo", "--model-root", str(tmp_path)]) == 0
    assert f"songsmith generate --model {MUSICGEN_DEMO}" in capsys.readouterr().out
    assert [route.name for route in discover(tmp_path)] == ["diffrhythm2", "diffrhythm1", MUSICGEN_DEMO]
    assert main(["models", "list", "--model-root", str(tmp_path)]) == 0
    listed = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()}
    assert listed[MUSICGEN_DEMO] == "musicgen"


def test_a_stereo_model_writes_stereo(models: Path, tmp_path: Path, capsys) -> None:
    output = tmp_path / "stereo.wav"
    flags = ["--model", "musicgen-stereo-demo", "--style", PROMPT, "--seconds", "2", "--seed", "4"]
    assert generate(models, output, *flags) == 0
    assert "2.0 s, 32000 Hz, 2 ch, model musicgen-stereo-demo, seed 4" in capsys.readouterr().out
    audio, rate = soundfile.read(output, dtype="float32")
    assert rate == SAMPLE_RATE and audio.shape == (2 * SAMPLE_RATE, 2)
    assert not np.allclose(audio[:, 0], audio[:, 1], atol=1e-3)


def test_a_melody_model_follows_the_recording(models: Path, tmp_path: Path) -> None:
    rate = 44100
    t = np.arange(2 * rate) / rate
    melody = tmp_path / "melody.wav"
    soundfile.write(melody, 0.4 * np.sin(2 * np.pi * 392.0 * t), rate)
    base = ["--model", "musicgen-melody-demo", "--style", PROMPT, "--seconds", "2", "--seed", "4"]
    assert generate(models, tmp_path / "with.wav", *base, "--style-audio", str(melody)) == 0
    assert generate(models, tmp_path / "without.wav", *base) == 0
    with_melody, rate = soundfile.read(tmp_path / "with.wav", dtype="float32")
    without, _ = soundfile.read(tmp_path / "without.wav", dtype="float32")
    assert rate == SAMPLE_RATE and with_melody.shape == without.shape == (2 * SAMPLE_RATE,)
    assert not np.array_equal(with_melody, without)


def test_sampling_flags_reach_the_model(models: Path, tmp_path: Path) -> None:
    base = ["--model", "musicgen-stereo-demo", "--style", PROMPT, "--seconds", "1"]
    assert generate(models, tmp_path / "a.wav", *base, "--greedy", "--seed", "1") == 0
    assert generate(models, tmp_path / "b.wav", *base, "--greedy", "--seed", "2") == 0
    assert (
        generate(models, tmp_path / "c.wav", *base, "--top-k", "1", "--temperature", "0.5", "--seed", "3")
        == 0
    )
    assert generate(models, tmp_path / "d.wav", *base, "--top-k", "40", "--top-p", "0.9", "--seed", "3") == 0
    files = [(tmp_path / f"{name}.wav").read_bytes() for name in "abcd"]
    assert files[0] == files[1] == files[2] != files[3]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--top-k", "5000"], "musicgen.top_k"),
        (["--temperature", "0"], "musicgen.temperature"),
        (["--top-k", "-1"], "--top-k -1"),
    ],
)
def test_bad_sampling_flags_are_refused(models: Path, tmp_path: Path, capsys, flags, message) -> None:
    base = ["--model", "musicgen-stereo-demo", "--style", PROMPT, "--seconds", "1"]
    assert generate(models, tmp_path / "bad.wav", *base, *flags) != 0
    assert message in capsys.readouterr().err


def test_lyrics_to_musicgen_are_refused(models: Path, tmp_path: Path, capsys) -> None:
    lyrics = tmp_path / "lyrics.txt"
    lyrics.write_text("[verse]\nla la la\n", encoding="utf-8")
    flags = ["--model", "musicgen-stereo-demo", "--style", PROMPT, "--lyrics", str(lyrics)]
    assert generate(models, tmp_path / "song.wav", *flags) != 0
    assert "lyrics: the model musicgen-stereo-demo (musicgen) sings no lyrics" in capsys.readouterr().err


def test_songsmith_up_serves_the_musicgen_demo(tmp_path: Path, capsys) -> None:
    root = tmp_path / "models"
    write_musicgen_demo(root)
    base = free_port_block(4)
    command = [sys.executable, "-m", "gateway.cli", "up", "--model-root", str(root), "--port", str(base)]
    command += ["--metrics-port", "0", "--var-dir", str(tmp_path / "var")]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (lines and lines[-1].startswith("ready:")):
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
        assert lines and lines[-1].startswith("ready:"), (lines, process.poll())
        assert [line.split()[0] for line in lines[:-1]] == ["gateway", "style", "diffusion", "vocoder"]
        server = f"127.0.0.1:{base}"
        assert main(["models", "list", "--server", server]) == 0
        assert capsys.readouterr().out.startswith(f"{MUSICGEN_DEMO} (default): musicgen revision")
        output = tmp_path / "song.mp3"
        flags = ["--server", server, "--model", MUSICGEN_DEMO, "--style", PROMPT, "--seconds", "3", "-q"]
        assert main(["generate", *flags, "-o", str(output)]) == 0
        assert f"3.0 s, 32000 Hz, 1 ch, model {MUSICGEN_DEMO}" in capsys.readouterr().out
        audio, rate = soundfile.read(output, dtype="float32")
        assert rate == SAMPLE_RATE and abs(len(audio) - 3 * SAMPLE_RATE) < 0.05 * SAMPLE_RATE
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
