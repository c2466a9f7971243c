"""Loading the published layout strictly: key checks, sub-model resolution, config variants."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from services.runtime.errors import FailedPreconditionError
from services.style.muq_mulan.demo import AUDIO_NAME, TEXT_NAME, TINY, DemoSize, write_demo_model
from services.style.muq_mulan.engine import StyleEngine
from services.style.muq_mulan.loader import ModelLoadError, load_mulan
from tests.style.conftest import CHECKPOINT, FIXTURE, copy_fixture_layout, expected


def rewrite_weights(checkpoint: Path, edit) -> None:
    """Apply `edit` to the checkpoint's state dict and save it back."""
    state = load_file(str(checkpoint / "model.safetensors"))
    edit(state)
    save_file(state, str(checkpoint / "model.safetensors"))


def test_fixture_sub_models_resolve_beside_the_checkpoint() -> None:
    loaded = load_mulan(CHECKPOINT)
    assert loaded.audio_model.path == FIXTURE / "MuQ-tiny-audio"
    assert loaded.text_model.path == FIXTURE / "xlm-roberta-tiny"
    assert loaded.weights_file.name == "model.safetensors"
    # ff_mult 4 at dim 32 gives int(85.33) = 85 hidden units: the GEGLU input is 170 wide.
    assert loaded.model.mulan.audio.transformer.layers[0][1][1].weight.shape == (170, 32)


def test_missing_tensor_is_reported(tmp_path: Path) -> None:
    checkpoint = copy_fixture_layout(tmp_path)
    rewrite_weights(checkpoint, lambda state: state.pop("mulan.audio.transformer.layers.1.0.q_scale"))
    message = re.escape("1 missing tensor(s): mulan.audio.transformer.layers.1.0.q_scale")
    with pytest.raises(ModelLoadError, match=message):
        load_mulan(checkpoint)


def test_unexpected_tensor_is_reported(tmp_path: Path) -> None:
    checkpoint = copy_fixture_layout(tmp_path)
    rewrite_weights(checkpoint, lambda state: state.update({"mulan.audio.extra_head.weight": torch.ones(3)}))
    with pytest.raises(ModelLoadError, match=r"1 unexpected tensor\(s\): mulan\.audio\.extra_head\.weight"):
        load_mulan(checkpoint)


def test_wrongly_shaped_tensor_is_reported(tmp_path: Path) -> None:
    checkpoint = copy_fixture_layout(tmp_path)
    rewrite_weights(checkpoint, lambda state: state.update({"mulan.audio_to_latents.bias": torch.zeros(256)}))
    message = re.escape("wrong shape tensor(s): mulan.audio_to_latents.bias (256,) (expected (512,))")
    with pytest.raises(ModelLoadError, match=message):
        load_mulan(checkpoint)


def test_known_unused_tensors_may_be_absent(tmp_path: Path) -> None:
    checkpoint = copy_fixture_layout(tmp_path)
    unused = (
        "mulan.audio.aggregator.",
        "mulan.contrast.",
        "mulan.text.model.pooler.",
        "mulan.audio.model.model.linear.",
    )
    rewrite_weights(checkpoint, lambda state: [state.pop(k) for k in list(state) if k.startswith(unused)])
    engine = StyleEngine.load(checkpoint, text_cache_size=0)
    vector = engine.embed_text("Pop, Piano, Bass, Drums, Happy").vector
    np.testing.assert_allclose(vector, expected("text_single")[0], rtol=0, atol=1e-5)


def test_missing_folders_and_files_are_failed_preconditions(tmp_path: Path) -> None:
    with pytest.raises(FailedPreconditionError, match="does not exist"):
        load_mulan(tmp_path / "nothing-here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=re.escape("config.json is missing")):
        load_mulan(tmp_path / "empty")
    checkpoint = copy_fixture_layout(tmp_path / "no-weights", weights=())
    with pytest.raises(ModelLoadError, match=re.escape("neither model.safetensors nor pytorch_model.bin")):
        load_mulan(checkpoint)


def _hub_cache_snapshot(cache: Path, repo_id: str, source: Path) -> None:
    """Install `source`'s files as repo `repo_id` in huggingface_hub's cache layout: blobs named by
    content hash, a snapshot folder of relative symlinks, and refs/main naming the commit."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for file in sorted(source.iterdir()):
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def _use_hub_names(root: Path, checkpoint: Path, cache: Path) -> None:
    config_path = checkpoint / "config.json"
    config = json.loads(config_path.read_text())
    for group, folder in (("audio_model", AUDIO_NAME), ("text_model", TEXT_NAME)):
        repo_id = f"songsmith-test/{folder}"
        _hub_cache_snapshot(cache, repo_id, root / folder)
        config[group]["name"] = repo_id
    config_path.write_text(json.dumps(config))


def test_sub_models_fall_back_to_the_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoint = write_demo_model(tmp_path / "models")
    reference = StyleEngine.load(checkpoint, text_cache_size=0).embed_text("hub cache").vector
    cache = tmp_path / "hub"
    _use_hub_names(tmp_path / "models", checkpoint, cache)

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    with pytest.raises(ModelLoadError, match=r"sub-model 'songsmith-test/MuQ-demo-audio' not found"):
        load_mulan(checkpoint)

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    loaded = load_mulan(checkpoint)
    assert loaded.audio_model.path.parent.parent.name == "models--songsmith-test--MuQ-demo-audio"
    assert loaded.text_model.path.parent.name == "snapshots"

    monkeypatch.delenv("HF_HUB_CACHE")
    engine = StyleEngine.load(checkpoint, text_cache_size=0, hub_cache_dir=str(cache))
    np.testing.assert_array_equal(engine.embed_text("hub cache").vector, reference)


def test_identity_text_projection_and_another_muq_layer(tmp_path: Path) -> None:
    size = DemoSize(**{**TINY.__dict__, "xlmr_dim": 32, "head_dim": 32})
    checkpoint = write_demo_model(tmp_path, size)
    config = json.loads((checkpoint / "config.json").read_text())
    config["audio_model"]["use_layer_idx"] = 1
    (checkpoint / "config.json").write_text(json.dumps(config))
    assert not any(k.startswith("mulan.text.proj.") for k in load_file(str(checkpoint / "model.safetensors")))

    model = load_mulan(checkpoint).model
    assert isinstance(model.mulan.text.proj, torch.nn.Identity)
    muq = model.mulan.audio.model.model
    wave = torch.from_numpy(np.random.default_rng(1).standard_normal((1, 48000)).astype(np.float32))
    with torch.inference_mode():
        frames = muq.conv(muq.front_end(wave))
        cos, sin = muq.conformer.embed_positions(frames.shape[1], frames.dtype)
        after_first = muq.conformer.layers[0](frames, cos, sin)
        after_all = muq.conformer.layer_norm(muq.conformer.layers[1](after_first, cos, sin))
        torch.testing.assert_close(muq.hidden_state(wave, 0), frames)
        torch.testing.assert_close(muq.hidden_state(wave, 1), after_first)
        torch.testing.assert_close(muq.hidden_state(wave, -1), after_all)
        torch.testing.assert_close(muq.hidden_state(wave, -3), frames)
        torch.testing.assert_close(model.audio_latents(wave), model.audio_latents_from_hidden(after_first))
        with pytest.raises(ValueError, match="outside the 3 MuQ hidden states"):
            muq.hidden_state(wave, 3)


def test_demo_model_is_deterministic_and_loadable(tmp_path: Path) -> None:
    first = write_demo_model(tmp_path / "a")
    second = write_demo_model(tmp_path / "b")
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["MuQ-MuLan-demo", AUDIO_NAME, TEXT_NAME]
    vector = StyleEngine.load(first, text_cache_size=0).embed_text("demo").vector
    assert vector.shape == (512,) and vector.dtype == np.float32
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-6)
