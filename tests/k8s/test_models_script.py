"""The model loader's shell scripts, as the chart renders them, run by a real `sh` on a real folder.

The scripts are the chart's own logic (lock, ready marker, skip when done); `songsmith models ...`
itself is the CLI's business and has its own tests, so here a small executable named `songsmith`
stands in for it and records each call, taking long enough for two loaders to overlap.
"""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.chart import RELEASE, chart, render_values

RECORDING_SONGSMITH = """#!/bin/sh
echo "$@" >> "{log}"
sleep 0.5
mkdir -p "$5/$3" && echo weights > "$5/$3/model.safetensors"
"""
MUSICGEN = {
    "name": "musicgen-small",
    "family": "musicgen",
    "source": "pull musicgen-small",
    "stages": {stage: {"modelDir": "musicgen-small"} for stage in ("style", "diffusion", "vocoder")},
}


def pull_script(models_root: Path) -> str:
    """The pull-models init container script of the diffusion pods, one volume per stage Deployment."""
    values = {"models": {"delivery": "volumePerStage", "mountPath": str(models_root)}}
    (pull,) = render_values(values).pod("diffusion")["initContainers"]
    assert pull["command"] == ["sh", "-c"]
    return pull["args"][0]


def shared_scripts(models_root: Path, served: list[dict[str, Any]] | None = None) -> tuple[str, str]:
    """The shared volume's Job script and the stage pods' wait script."""
    models: dict[str, Any] = {"delivery": "sharedVolume", "mountPath": str(models_root)}
    if served:
        models["served"] = served
    rendered = render_values({"models": models})
    (job,) = rendered.of_kind("Job")
    (loader,) = job["spec"]["template"]["spec"]["containers"]
    (wait,) = rendered.pod("diffusion")["initContainers"]
    assert loader["command"] == wait["command"] == ["sh", "-c"]
    return loader["args"][0], wait["args"][0]


def run(script: str, bin_dir: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a rendered script as its container would (`sh -c`), with `bin_dir` first on PATH."""
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A folder with the recording `songsmith`, which logs to tmp_path/calls.log."""
    folder = tmp_path / "bin"
    folder.mkdir()
    fake = folder / "songsmith"
    fake.write_text(RECORDING_SONGSMITH.format(log=tmp_path / "calls.log"))
    fake.chmod(0o755)
    return folder


def test_pods_sharing_a_stage_volume_download_once(tmp_path: Path, bin_dir: Path) -> None:
    models_root = tmp_path / "models"
    models_root.mkdir()
    script = pull_script(models_root)
    log = tmp_path / "calls.log"

    with ThreadPoolExecutor(max_workers=2) as pool:
        # Two replicas start together on the Deployment's volume: one downloads, the other waits on
        # the lock, then finds the marker.
        results = list(pool.map(lambda _: run(script, bin_dir), range(2)))

    for result in results:
        assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines() == [f"models pull diffrhythm2 --model-root {models_root}"]
    assert (models_root / "diffrhythm2" / "model.safetensors").read_text() == "weights\n"
    assert len(list((models_root / ".songsmith").glob("ready-*"))) == 1

    # A restarted pod finds the marker and touches nothing.
    assert run(script, bin_dir).returncode == 0
    assert len(log.read_text().splitlines()) == 1


def test_the_job_fills_the_shared_volume_and_the_stages_start_after_it(tmp_path: Path, bin_dir: Path) -> None:
    models_root = tmp_path / "models"
    models_root.mkdir()
    default = shared_scripts(models_root)[0]
    job_script, wait_script = shared_scripts(models_root, [*chart().values["models"]["served"], MUSICGEN])
    marker = next(word for word in wait_script.split() if "/.songsmith/ready-" in word)
    assert marker in job_script
    # Another model list is another marker (and another Job): the new model is downloaded.
    assert marker not in default

    with ThreadPoolExecutor(max_workers=2) as pool:
        waiter = pool.submit(run, wait_script, bin_dir)
        loaded = pool.submit(run, job_script, bin_dir).result()
        waited = waiter.result()

    assert loaded.returncode == 0, loaded.stderr
    assert waited.returncode == 0, waited.stderr
    assert (tmp_path / "calls.log").read_text().splitlines() == [
        f"models pull diffrhythm2 --model-root {models_root}",
        f"models pull musicgen-small --model-root {models_root}",
    ]
    assert Path(marker).is_file()
    assert (models_root / "musicgen-small" / "model.safetensors").is_file()


def test_a_failed_download_leaves_no_marker_and_fails_the_loader(tmp_path: Path) -> None:
    models_root = tmp_path / "models"
    models_root.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    failing = bin_dir / "songsmith"
    failing.write_text("#!/bin/sh\necho 'songsmith: error: offline' >&2\nexit 2\n")
    failing.chmod(0o755)
    job_script, wait_script = shared_scripts(models_root)

    for script in (job_script, pull_script(models_root)):
        result = run(script, bin_dir)
        assert result.returncode == 2
        assert "offline" in result.stderr
    assert not list((models_root / ".songsmith").glob("ready-*"))
    # The stage pods keep waiting (the Job retries); here the wait is cut short by the timeout.
    with pytest.raises(subprocess.TimeoutExpired):
        run(wait_script, bin_dir, timeout=2)


def test_the_job_is_named_after_what_it_downloads() -> None:
    def job_name(values: dict[str, Any]) -> str:
        return render_values({"models": {"delivery": "sharedVolume"}, **values}).of_kind("Job")[0][
            "metadata"
        ]["name"]

    pulled = job_name({})
    assert pulled.startswith(f"{RELEASE}-models-")
    assert job_name({"global": {"image": {"tag": "0.2.0"}}}) != pulled
