"""`songsmith up`: five healthy processes, their addresses printed, all stopped cleanly on Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import grpc
import pytest
import soundfile
from grpc_health.v1 import health_pb2

from tests.helpers import free_port_block, health_status

ROOT = Path(__file__).resolve().parents[2]


def test_up_starts_everything_and_ctrl_c_stops_it(demo_models: Path, tmp_path: Path) -> None:
    base = free_port_block(5)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "up",
            "--model-root",
            str(demo_models),
            "--port",
            str(base),
            "--metrics-port",
            "0",
            "--var-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("ready:"):
                break
        assert lines and lines[-1].startswith("ready:"), (
            lines,
            process.stderr.read() if process.poll() else "",
        )
        names = [line.split()[0] for line in lines[:-1]]
        assert names == ["gateway", "tokenizer", "style", "diffusion", "vocoder"]
        for port in range(base, base + 5):
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                assert health_status(channel) == health_pb2.HealthCheckResponse.SERVING
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        for port in range(base, base + 5):
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                assert health_status(channel) == health_pb2.HealthCheckResponse.UNKNOWN
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_demo_writes_a_song_from_any_folder(tmp_path: Path) -> None:
    """What `make demo` runs, from a folder outside the repository: it writes the demo models, makes
    the song and its chart through the local stack (the chart stage included) and says the models
    are untrained."""
    base = free_port_block(6)
    output = tmp_path / "out" / "demo.mp3"
    command = [sys.executable, "-m", "gateway.cli", "demo", "-o", str(output), "--max-secs", "6"]
    folders = ["--model-root", str(tmp_path / "models"), "--var-dir", str(tmp_path / "var")]
    options = [*folders, "--port", str(base)]
    finished = subprocess.run(
        [*command, *options], cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    audio, rate = soundfile.read(output)
    assert rate == 48000 and audio.shape[0] == pytest.approx(6 * rate, rel=0.05)
    assert f"your song is at {output.resolve()}" in finished.stdout
    assert "untrained demo model" in finished.stdout
    osz = output.with_suffix(".osz")
    assert f"its osu!mania chart is in {osz.resolve()}" in finished.stdout
    assert "untrained demo chart model" in finished.stdout
    with zipfile.ZipFile(osz) as archive:
        assert archive.namelist() == [
            "audio.mp3",
            "Unknown Artist - Morning Light (MuG Diffusion v0-demo) [AI v1].osu",
        ]
        assert archive.read("audio.mp3") == output.read_bytes()
