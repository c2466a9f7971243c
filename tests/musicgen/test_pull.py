"""`songsmith models pull musicgen-*` against the local stand-in of the Hub: one folder per checkpoint
with its configs, T5 tokenizer and whichever weight layout the repository holds (one file, or shards
with their index), pinned to the listed commit in the manifest, and servable by all three stages."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from gateway.cli import main
from gateway.model_store import MODELS
from gateway.models import discover
from gateway.musicgen_hub import HUB_MODELS
from services.diffusion.musicgen.demo import write_demo_model
from services.diffusion.musicgen.engine import MusicgenEngine
from services.runtime.model_info import MANIFEST_FILE, model_name
from services.style.musicgen.engine import MusicgenStyleEngine
from services.vocoder.musicgen.engine import MusicgenVocoderEngine
from tests.gateway.hub_standin import HubFile, HubRepo, StandInHub

SMALL = "facebook/musicgen-small"
OTHER_FILES = ("config.json", "generation_config.json", "preprocessor_config.json")
TOKENIZER_FILES = ("spiece.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _commit(repo_id: str) -> str:
    return hashlib.sha1(repo_id.encode()).hexdigest()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model in the published layout, the files the stand-in repository serves."""
    return write_demo_model(tmp_path_factory.mktemp("published") / "musicgen", "mono")


def _repo(demo: Path, sharded: bool = False, repo_id: str = SMALL) -> HubRepo:
    """The repository as the Hub lists it: configs, tokenizer, the weights (one file, or two shards and
    their index), and files a pull must leave alone (AudioCraft's own checkpoints, the README)."""
    files = {name: HubFile((demo / name).read_bytes()) for name in OTHER_FILES + TOKENIZER_FILES}
    files["README.md"] = HubFile(b"# MusicGen\n")
    files["state_dict.bin"] = HubFile(b"audiocraft's lm", lfs=True)
    files["compression_state_dict.bin"] = HubFile(b"audiocraft's encodec", lfs=True)
    if not sharded:
        files["model.safetensors"] = HubFile((demo / "model.safetensors").read_bytes(), lfs=True)
        return HubRepo(_commit(repo_id), files)
    state = load_file(str(demo / "model.safetensors"))
    keys = sorted(state)
    weight_map = {}
    for number, part in enumerate((keys[: len(keys) // 2], keys[len(keys) // 2 :]), start=1):
        name = f"model-{number:05d}-of-00002.safetensors"
        path = demo.parent / name
        save_file({key: state[key] for key in part}, str(path), metadata={"format": "pt"})
        files[name] = HubFile(path.read_bytes(), lfs=True)
        weight_map |= dict.fromkeys(part, name)
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    files["model.safetensors.index.json"] = HubFile(json.dumps(index).encode())
    return HubRepo(_commit(repo_id), files)


def _pull(hub: StandInHub, root: Path, model: str = "musicgen-small") -> int:
    return main(["models", "pull", model, "--model-root", str(root), "--endpoint", hub.url])


def test_every_published_checkpoint_can_be_pulled() -> None:
    for name, model in HUB_MODELS.items():
        (repo,) = MODELS[name]
        assert (repo.repo_id, repo.folder, repo.name, repo.family) == (model.repo_id, name, name, "musicgen")
        assert set(TOKENIZER_FILES) | set(OTHER_FILES) <= set(repo.files)


@pytest.mark.parametrize("sharded", [False, True], ids=["one-file", "sharded"])
def test_pull_follows_the_listing_pins_the_commit_and_serves(
    demo: Path, tmp_path: Path, sharded: bool
) -> None:
    repos = {SMALL: _repo(demo, sharded)}
    with StandInHub(repos) as hub:
        assert _pull(hub, tmp_path) == 0
    folder = tmp_path / "musicgen-small"
    weights = (
        (
            "model.safetensors.index.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
        )
        if sharded
        else ("model.safetensors",)
    )
    wanted = set(OTHER_FILES + TOKENIZER_FILES + weights)
    assert {path.name for path in folder.iterdir() if path.is_file()} == wanted | {MANIFEST_FILE}
    assert sorted(hub.downloads()) == sorted(f"{SMALL}/{name}" for name in wanted)
    manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    assert manifest["name"] == "musicgen-small" and manifest["family"] == "musicgen"
    assert manifest["source"] == {"repo": SMALL, "revision": _commit(SMALL)}
    listed = repos[SMALL].files
    assert manifest["files"] == {
        name: {"sha256": listed[name].sha256, "size": len(listed[name].data)} for name in wanted
    }
    assert [route.name for route in discover(tmp_path)] == ["musicgen-small"]
    generation = MusicgenEngine.load(folder)
    style = MusicgenStyleEngine.load(folder)
    vocoder = MusicgenVocoderEngine.load(folder)
    assert (
        generation.info.name == style.info.name == vocoder.info.name == model_name(folder) == "musicgen-small"
    )
    reference = MusicgenEngine.load(demo)
    assert generation.info.revision != "" and (generation.info.revision == reference.info.revision) != sharded


def test_a_listing_without_weights_stops_the_pull_before_any_download(
    demo: Path, tmp_path: Path, capsys
) -> None:
    repos = {SMALL: _repo(demo)}
    del repos[SMALL].files["model.safetensors"]
    with StandInHub(repos) as hub:
        assert _pull(hub, tmp_path) == 1
    err = capsys.readouterr().err
    assert f"{SMALL} at revision {_commit(SMALL)}: the repository lists no model.safetensors" in err
    assert hub.downloads() == []
    assert not any(path.is_file() for path in tmp_path.rglob("*"))


def test_a_listing_without_the_t5_tokenizer_stops_the_pull(demo: Path, tmp_path: Path, capsys) -> None:
    repos = {SMALL: _repo(demo)}
    del repos[SMALL].files["tokenizer.json"]
    with StandInHub(repos) as hub:
        assert _pull(hub, tmp_path) == 1
    assert f"{SMALL} at revision {_commit(SMALL)} lists no tokenizer.json" in capsys.readouterr().err
    assert hub.downloads() == []


def test_a_stereo_checkpoint_pulls_into_its_own_folder(demo: Path, tmp_path: Path) -> None:
    stereo = write_demo_model(tmp_path / "published-stereo", "stereo")
    repo_id = "facebook/musicgen-stereo-small"
    with StandInHub({repo_id: _repo(stereo, repo_id=repo_id)}) as hub:
        assert _pull(hub, tmp_path / "models", "musicgen-stereo-small") == 0
    folder = tmp_path / "models" / "musicgen-stereo-small"
    assert MusicgenVocoderEngine.load(folder).info.channels == 2
    assert model_name(folder) == "musicgen-stereo-small"
