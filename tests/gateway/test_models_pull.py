"""`songsmith models pull` against a local stand-in of the Hub API (issue 18, item 14): it follows the
repository's file list (DiffRhythm 2's config.json was model.json), pins the commit it pulled in a
manifest beside the files, stops on a missing file before downloading, refuses a wrong hash, and
resumes an interrupted download."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gateway.cli import main
from gateway.model_store import MODELS
from services.diffusion.diffrhythm2.engine import DiffusionEngine
from services.runtime.model_info import MANIFEST_FILE, model_name
from services.vocoder.diffrhythm2.engine import VocoderEngine
from tests.gateway.hub_standin import HubFile, HubRepo, StandInHub

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "diffrhythm2-tiny"
DIFFRHYTHM2 = "ASLP-lab/DiffRhythm2"
V1_FIXTURE = ROOT / "tests" / "fixtures" / "diffrhythm1-tiny"
V1_PACKAGE = ROOT / "services" / "diffusion" / "diffrhythm1" / "assets"


def _commit(repo_id: str) -> str:
    return hashlib.sha1(repo_id.encode()).hexdigest()


def _repos(config_name: str = "config.json") -> dict[str, HubRepo]:
    """The four repositories `diffrhythm2` pulls; DiffRhythm 2 is the tiny fixture in the published
    layout with its DiT config under `config_name`, the MuQ-MuLan ones small stand-in files."""
    weights = np.random.default_rng(7).integers(0, 256, 70_000, dtype=np.uint8).tobytes()
    return {
        DIFFRHYTHM2: HubRepo(
            _commit(DIFFRHYTHM2),
            {
                "README.md": HubFile(b"# DiffRhythm 2\n"),
                "model.safetensors": HubFile((FIXTURE / "model.safetensors").read_bytes(), lfs=True),
                config_name: HubFile((FIXTURE / "config.json").read_bytes()),
                "decoder.bin": HubFile((FIXTURE / "decoder.bin").read_bytes(), lfs=True),
                "decoder.json": HubFile((FIXTURE / "decoder.json").read_bytes()),
            },
        ),
        "OpenMuQ/MuQ-MuLan-large": HubRepo(
            _commit("OpenMuQ/MuQ-MuLan-large"),
            {"config.json": HubFile(b'{"mulan": {}}\n'), "pytorch_model.bin": HubFile(weights, lfs=True)},
        ),
        "OpenMuQ/MuQ-large-msd-iter": HubRepo(
            _commit("OpenMuQ/MuQ-large-msd-iter"), {"config.json": HubFile(b'{"label_rate": 25}\n')}
        ),
        "FacebookAI/xlm-roberta-base": HubRepo(
            _commit("FacebookAI/xlm-roberta-base"),
            {
                "config.json": HubFile(b'{"hidden_size": 768}\n'),
                "tokenizer.json": HubFile(b'{"model": {}}\n'),
            },
        ),
    }


def _pull(hub: StandInHub, root: Path) -> int:
    return main(["models", "pull", "diffrhythm2", "--model-root", str(root), "--endpoint", hub.url])


def _manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))


@pytest.mark.parametrize("config_name", ["config.json", "model.json"], ids=["renamed", "original"])
def test_pull_follows_the_listing_and_pins_the_commit(tmp_path: Path, config_name: str) -> None:
    repos = _repos(config_name)
    with StandInHub(repos) as hub:
        assert _pull(hub, tmp_path) == 0
    folder = tmp_path / "diffrhythm2"
    other = {"config.json": "model.json", "model.json": "config.json"}[config_name]
    assert (folder / config_name).is_file() and not (folder / other).exists()
    assert not (folder / "README.md").exists()
    manifest = _manifest(folder)
    assert manifest["name"] == "diffrhythm2" and manifest["family"] == "diffrhythm2"
    assert manifest["source"] == {"repo": DIFFRHYTHM2, "revision": _commit(DIFFRHYTHM2)}
    listed = repos[DIFFRHYTHM2].files
    assert manifest["files"] == {
        name: {"sha256": listed[name].sha256, "size": len(listed[name].data)}
        for name in ("model.safetensors", config_name, "decoder.bin", "decoder.json")
    }
    for repo in MODELS["diffrhythm2"][1:]:
        assert _manifest(tmp_path / repo.folder)["source"] == {
            "repo": repo.repo_id,
            "revision": _commit(repo.repo_id),
        }
    resolved = [r.path for r in hub.requests if "/resolve/" in r.path]
    assert resolved and all(
        f"/resolve/{_commit(p.split('/')[1] + '/' + p.split('/')[2])}/" in p for p in resolved
    )
    diffusion, vocoder = DiffusionEngine.load(folder), VocoderEngine.load(folder)
    assert diffusion.info.name == vocoder.info.name == model_name(folder) == "diffrhythm2"
    assert diffusion.info.revision == manifest["files"]["model.safetensors"]["sha256"]


def test_a_file_missing_from_the_listing_stops_the_pull_before_any_download(tmp_path: Path, capsys) -> None:
    repos = _repos()
    del repos[DIFFRHYTHM2].files["decoder.bin"]
    with StandInHub(repos) as hub:
        assert _pull(hub, tmp_path) == 1
    err = capsys.readouterr().err
    assert f"{DIFFRHYTHM2} at revision {_commit(DIFFRHYTHM2)} lists no decoder.bin" in err
    assert hub.downloads() == []
    assert not any(path.is_file() for path in tmp_path.rglob("*"))


def test_neither_config_name_listed_names_both(tmp_path: Path, capsys) -> None:
    repos = _repos()
    del repos[DIFFRHYTHM2].files["config.json"]
    with StandInHub(repos) as hub:
        assert _pull(hub, tmp_path) == 1
    assert "lists no config.json or model.json" in capsys.readouterr().err


def test_a_wrong_hash_is_refused_and_a_new_pull_fetches_only_what_is_missing(tmp_path: Path, capsys) -> None:
    repos = _repos()
    decoder = repos[DIFFRHYTHM2].files["decoder.bin"]
    decoder.served = bytes(b ^ 0xFF if i == 1000 else b for i, b in enumerate(decoder.data))
    with StandInHub(repos) as hub:
        assert _pull(hub, tmp_path) == 1
        err = capsys.readouterr().err
        assert (
            "download check failed" in err and f"{DIFFRHYTHM2}/decoder.bin at {_commit(DIFFRHYTHM2)}" in err
        )
        assert f"differs from the Hub's {decoder.sha256}" in err
        folder = tmp_path / "diffrhythm2"
        assert not (folder / "decoder.bin").exists() and not (folder / MANIFEST_FILE).exists()
        first = hub.downloads()
        decoder.served = None
        assert _pull(hub, tmp_path) == 0
        again = hub.downloads()[len(first) :]
    assert first == [f"{DIFFRHYTHM2}/{name}" for name in ("model.safetensors", "config.json", "decoder.bin")]
    assert f"{DIFFRHYTHM2}/model.safetensors" not in again and f"{DIFFRHYTHM2}/config.json" not in again
    assert again[0] == f"{DIFFRHYTHM2}/decoder.bin"
    assert (folder / "decoder.bin").read_bytes() == decoder.data


def test_a_dropped_connection_is_resumed_with_a_range_request(tmp_path: Path) -> None:
    """The connection drops halfway through a 24 MiB file; huggingface_hub keeps what it wrote (in
    10 MiB pieces) and asks for the rest from there."""
    repos = _repos()
    big = np.random.default_rng(8).integers(0, 256, 24 << 20, dtype=np.uint8).tobytes()
    repos["OpenMuQ/MuQ-MuLan-large"].files["pytorch_model.bin"] = HubFile(big, lfs=True)
    with StandInHub(repos, drop_once={"OpenMuQ/MuQ-MuLan-large/pytorch_model.bin"}) as hub:
        assert _pull(hub, tmp_path) == 0
    gets = [r for r in hub.requests if r.method == "GET" and r.path.endswith("/pytorch_model.bin")]
    assert [r.range for r in gets] == [None, f"bytes={10 << 20}-"]
    assert (tmp_path / "muq-mulan" / "MuQ-MuLan-large" / "pytorch_model.bin").read_bytes() == big


def test_a_killed_pull_run_again_downloads_only_the_rest(tmp_path: Path) -> None:
    """`songsmith models pull` in its own process, killed while decoder.bin is halfway through; the
    next pull keeps the files that were complete and fetches decoder.bin and the rest."""
    repos = _repos()
    with StandInHub(repos, stall={f"{DIFFRHYTHM2}/decoder.bin"}) as hub:
        argv = ["models", "pull", "diffrhythm2", "--model-root", str(tmp_path), "--endpoint", hub.url]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", *argv], cwd=ROOT, env=env, stderr=subprocess.DEVNULL
        )
        try:
            assert hub.stalled.wait(120), "the pull never reached decoder.bin"
        finally:
            process.kill()
            process.wait(30)
        hub.stall.clear()
        hub.release.set()
        killed = hub.downloads()
        time.sleep(0.1)
        assert _pull(hub, tmp_path) == 0
        again = hub.downloads()[len(killed) :]
    assert killed[-1] == f"{DIFFRHYTHM2}/decoder.bin"
    assert again[0] == f"{DIFFRHYTHM2}/decoder.bin"
    assert not set(again) & set(killed[:-1])
    assert (tmp_path / "diffrhythm2" / "decoder.bin").read_bytes() == repos[DIFFRHYTHM2].files[
        "decoder.bin"
    ].data


@pytest.mark.parametrize(
    ("model", "checkpoint_repo"),
    [("diffrhythm1", "ASLP-lab/DiffRhythm-1_2"), ("diffrhythm1-full", "ASLP-lab/DiffRhythm-1_2-full")],
)
def test_pull_diffrhythm1_pins_the_vae_and_adds_the_packaged_files(
    tmp_path: Path, model: str, checkpoint_repo: str
) -> None:
    """The DiT and the VAE come from their repositories, the config and the negative style from our
    package; the manifest pins all four (the VAE is only opened with its pin), and MuQ-MuLan goes to
    the folders DiffRhythm 2 shares."""
    from services.diffusion.families import GENERATION_FAMILIES
    from services.vocoder.diffrhythm1.engine import DiffRhythm1Vocoder

    repos = _repos()
    repos[checkpoint_repo] = HubRepo(
        _commit(checkpoint_repo),
        {"cfm_model.pt": HubFile((V1_FIXTURE / "cfm_model.pt").read_bytes(), lfs=True)},
    )
    vae = "ASLP-lab/DiffRhythm-vae"
    repos[vae] = HubRepo(
        _commit(vae), {"vae_model.pt": HubFile((V1_FIXTURE / "vae_model.pt").read_bytes(), lfs=True)}
    )
    with StandInHub(repos) as hub:
        assert main(["models", "pull", model, "--model-root", str(tmp_path), "--endpoint", hub.url]) == 0
    assert sorted(hub.downloads())[:2] == sorted([f"{checkpoint_repo}/cfm_model.pt", f"{vae}/vae_model.pt"])
    assert DIFFRHYTHM2 not in {download.rsplit("/", 1)[0] for download in hub.downloads()}
    folder = tmp_path / model
    manifest = _manifest(folder)
    assert manifest["name"] == model and manifest["family"] == "diffrhythm1"
    assert manifest["source"] == {
        "repos": [
            {"repo": repo_id, "revision": _commit(repo_id)} for repo_id in sorted((checkpoint_repo, vae))
        ],
        "package": "services.diffusion.diffrhythm1.models",
    }
    for name, repo_id in (("cfm_model.pt", checkpoint_repo), ("vae_model.pt", vae)):
        listed = repos[repo_id].files[name]
        assert manifest["files"][name] == {
            "sha256": listed.sha256,
            "size": len(listed.data),
            "repo": repo_id,
            "revision": _commit(repo_id),
        }
    for name, packaged in (
        ("config.json", "diffrhythm-1b.json"),
        ("negative_style.npy", "negative_style.npy"),
    ):
        data = (V1_PACKAGE / packaged).read_bytes()
        assert (folder / name).read_bytes() == data
        assert manifest["files"][name] == {
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "package": "services.diffusion.diffrhythm1.models",
        }
    assert GENERATION_FAMILIES.detect(folder).name == "diffrhythm1"
    vocoder = DiffRhythm1Vocoder.load(folder)
    assert vocoder.info.revision == manifest["files"]["vae_model.pt"]["sha256"]
    assert (
        _manifest(tmp_path / "muq-mulan" / "MuQ-MuLan-large")["source"]["repo"] == "OpenMuQ/MuQ-MuLan-large"
    )
