"""Every `songsmith` command that loads torch does so with passive OpenMP waiting (issue 18, item 13).

Each command runs in its own Python process, as a user runs it. A probe on the import system notes
the value of OMP_WAIT_POLICY at the moment torch is first imported, which is when libgomp reads it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY_DIT = ROOT / "tests" / "fixtures" / "diffrhythm2-tiny"
PROBE = """
import os, sys

class TorchImportProbe:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            sys.stderr.write(f"policy at torch import: {os.environ.get('OMP_WAIT_POLICY')}\\n")
            sys.meta_path.remove(self)
        return None

sys.meta_path.insert(0, TorchImportProbe())
from gateway.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _policy_when_torch_loaded(argv: list[str], preset: str | None) -> tuple[str, subprocess.CompletedProcess]:
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    if preset is not None:
        env["OMP_WAIT_POLICY"] = preset
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    seen = [line for line in done.stderr.splitlines() if line.startswith("policy at torch import: ")]
    assert len(seen) == 1, done.stderr
    return seen[0].removeprefix("policy at torch import: "), done


@pytest.fixture(scope="module")
def latents_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("latents-inputs")
    style = np.random.default_rng(3).standard_normal(512).astype(np.float32)
    np.save(folder / "style.npy", style / np.linalg.norm(style))
    (folder / "tokens.json").write_text(json.dumps([500, 511, 40, 41, 511]))
    return {"style": folder / "style.npy", "tokens": folder / "tokens.json", "out": folder / "latents.npy"}


@pytest.mark.parametrize(("preset", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_latents_generate_runs_with_passive_waiting_unless_told_otherwise(
    latents_inputs: dict[str, Path], preset: str | None, expected: str
) -> None:
    argv = ["latents", "generate", "--model-dir", str(TINY_DIT), "--tokens", str(latents_inputs["tokens"])]
    argv += ["--style", str(latents_inputs["style"]), "--seed", "1", "--steps", "2", "--max-frames", "5"]
    policy, done = _policy_when_torch_loaded([*argv, "-o", str(latents_inputs["out"])], preset)
    assert done.returncode == 0, done.stderr
    assert np.load(latents_inputs["out"]).shape == (5, 64)
    assert policy == expected


@pytest.mark.parametrize("command", ["generate", "batch"])
def test_song_commands_load_torch_with_passive_waiting(
    demo_models: Path, tmp_path: Path, command: str
) -> None:
    """`generate` and `batch` in this process, one short song on the demo model."""
    lyrics = tmp_path / "lyrics.txt"
    lyrics.write_text("[verse]\nla la la\n", encoding="utf-8")
    songs = tmp_path / "songs.jsonl"
    line = {"song_name": "a", "style_prompt": "pop", "lyrics": str(lyrics), "max_secs": 2, "steps": 2}
    songs.write_text(json.dumps(line) + "\n")
    where = ["--local", "--model-root", str(demo_models)]
    argv = {
        "generate": ["generate", "--lyrics", str(lyrics), "--style", "pop", "-o", str(tmp_path / "a.wav")],
        "batch": ["batch", str(songs), "-o", str(tmp_path / "out")],
    }[command]
    if command == "generate":
        argv += ["--max-secs", "2", "--steps", "2"]
    policy, done = _policy_when_torch_loaded([*argv, *where, "--quiet"], None)
    assert done.returncode == 0, done.stderr
    assert policy == "PASSIVE"
