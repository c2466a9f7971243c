"""The model loader's shell script, as the chart renders it, run by a real `sh` on a real folder.

The script is the chart's own logic (lock, ready marker, skip when done); `songsmith models ...`
itself is the CLI's business and has its own tests, so here a small executable named `songsmith`
stands in for it and records each call, taking long enough for two loaders to overlap.
"""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.k8s.chart import RELEASE, render_values

RECORDING_SONGSMITH = """#!/bin/sh
echo "$@" >> "{log}"
sleep 0.5
mkdir -p "$5/diffrhythm2" && echo weights > "$5/diffrhythm2/model.safetensors"
"""


def scripts_for(models_root: Path) -> tuple[str, str, str]:
    """The Job's loader script, the init-container loader script and the wait script for `models_root`."""
    values = {"models": {"source": "pull", "mountPath": str(models_root)}}
    job = render_values(values).of_kind("Job")[0]["spec"]["template"]["spec"]["containers"][0]
    init_values = {"models": {**values["models"], "loader": "initContainer"}}
    pull = render_values(init_values).deployment("diffusion")["spec"]["template"]["spec"]["initContainers"][0]
    wait = render_values(values).deployment("diffusion")["spec"]["template"]["spec"]["initContainers"][0]
    assert job["command"] == pull["command"] == wait["command"] == ["sh", "-c"]
    return job["args"][0], pull["args"][0], wait["args"][0]


def run(script: str, bin_dir: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a rendered script as its container would (`sh -c`), with `bin_dir` first on PATH."""
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=timeout)


def test_loaders_download_once_and_waiters_start_after_the_marker(tmp_path: Path) -> None:
    models_root = tmp_path / "models"
    models_root.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    fake = bin_dir / "songsmith"
    fake.write_text(RECORDING_SONGSMITH.format(log=log))
    fake.chmod(0o755)
    job_script, init_script, wait_script = scripts_for(models_root)
    marker = next(word for word in wait_script.split() if "/.songsmith/ready-" in word)
    assert job_script == init_script

    with ThreadPoolExecutor(max_workers=3) as pool:
        # A waiter and two loaders start together: the waiter blocks until the marker exists.
        waiter = pool.submit(run, wait_script, bin_dir)
        loaders = [pool.submit(run, script, bin_dir) for script in (job_script, init_script)]
        results = [future.result() for future in loaders]
        waited = waiter.result()

    for result in results:
        assert result.returncode == 0, result.stderr
    assert waited.returncode == 0, waited.stderr
    assert log.read_text().splitlines() == [f"models pull diffrhythm2 --model-root {models_root}"]
    assert Path(marker).is_file()
    assert (models_root / "diffrhythm2" / "model.safetensors").read_text() == "weights\n"

    # Later loaders find the marker and touch nothing.
    assert run(job_script, bin_dir).returncode == 0
    assert len(log.read_text().splitlines()) == 1


def test_a_failed_download_leaves_no_marker_and_fails_the_loader(tmp_path: Path) -> None:
    models_root = tmp_path / "models"
    models_root.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    failing = bin_dir / "songsmith"
    failing.write_text("#!/bin/sh\necho 'songsmith: error: offline' >&2\nexit 2\n")
    failing.chmod(0o755)
    job_script, _, wait_script = scripts_for(models_root)

    result = run(job_script, bin_dir)
    assert result.returncode == 2
    assert "offline" in result.stderr
    assert not list((models_root / ".songsmith").glob("ready-*"))
    # The stage pods keep waiting (the Job retries); here the wait is cut short by the timeout.
    with pytest.raises(subprocess.TimeoutExpired):
        run(wait_script, bin_dir, timeout=2)


def test_the_job_is_named_after_what_it_downloads() -> None:
    pulled = render_values({}).of_kind("Job")[0]["metadata"]["name"]
    assert pulled.startswith(f"{RELEASE}-models-")
    newer_image = render_values({"global": {"image": {"tag": "0.2.0"}}}).of_kind("Job")[0]["metadata"]["name"]
    assert newer_image != pulled
