"""The wheel carries what the installed `songsmith` command reads at run time."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from gateway.commands.demo import EXAMPLE_LYRICS

ROOT = Path(__file__).resolve().parents[1]
SOURCE_FILES = ("pyproject.toml", "README.md")
SOURCE_FOLDERS = ("protos", "services", "gateway")


def test_the_wheel_ships_the_demo_lyrics(tmp_path: Path) -> None:
    """Built from a clean copy of what the Dockerfile copies (no stale build/ folder can help)."""
    source = tmp_path / "source"
    for folder in SOURCE_FOLDERS:
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for file in SOURCE_FILES:
        shutil.copy2(ROOT / file, source / file)
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*build, "-w", str(tmp_path), str(source)], check=True, timeout=300)
    (wheel,) = tmp_path.glob("songsmith-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert EXAMPLE_LYRICS.relative_to(ROOT).as_posix() in names
    assert "songsmith/v1/song_pb2.py" in names and "gateway/cli.py" in names
    assets = "services/diffusion/diffrhythm1/assets/"
    assert {assets + "negative_style.npy", assets + "diffrhythm-1b.json"} <= names
    for backend in ("sqlite", "postgresql"):
        assert f"gateway/stores/migrations/{backend}/0003_frames.sql" in names
