"""The DiT and its checkpoint loader against the reference's recorded forward and the published keys."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from services.diffusion.diffrhythm2.checkpoint import CheckpointError, load_dit
from services.diffusion.diffrhythm2.demo import DEMO_CONFIG, write_demo_checkpoint
from services.diffusion.diffrhythm2.dit import DiTConfig
from services.diffusion.diffrhythm2.engine import DiffusionEngine
from services.runtime.errors import FailedPreconditionError
from tests.diffusion.conftest import FIXTURE_DIR


def test_plain_forward_matches_reference(case: dict) -> None:
    model = load_dit(FIXTURE_DIR)
    forward = case["forward"]
    x = torch.from_numpy(np.load(FIXTURE_DIR / forward["x"]))[None]
    time = torch.from_numpy(np.load(FIXTURE_DIR / forward["time"]))[None]
    positions = torch.tensor(forward["position_ids"])[None]
    style = torch.from_numpy(case["style_vector"])[None]
    with torch.inference_mode():
        out = model(x, time, positions, style)[0].numpy()
    expected = np.load(FIXTURE_DIR / forward["expected"])
    assert out.shape == expected.shape == (7, 64)
    assert np.abs(out - expected).max() <= 1e-4


def test_config_json_and_model_json_give_the_same_config(tmp_path: Path) -> None:
    both = DiTConfig.from_model_dir(FIXTURE_DIR)
    only_old = tmp_path / "old"
    only_old.mkdir()
    shutil.copy(FIXTURE_DIR / "model.json", only_old / "model.json")
    assert DiTConfig.from_model_dir(only_old) == both
    assert (both.dim, both.depth, both.heads, both.ff_mult, both.repa_dims) == (128, 2, 2, 2, (64,))
    assert both.text_num_embeds == 1000 and both.block_size == 10


def test_config_json_wins_over_model_json(tmp_path: Path) -> None:
    raw = json.loads((FIXTURE_DIR / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(raw))
    (tmp_path / "model.json").write_text(json.dumps({**raw, "depth": 7}))
    assert DiTConfig.from_model_dir(tmp_path).depth == 2


def _checkpoint_with(tmp_path: Path, edit) -> Path:
    state = load_file(str(FIXTURE_DIR / "model.safetensors"))
    edit(state)
    save_file(state, str(tmp_path / "model.safetensors"))
    shutil.copy(FIXTURE_DIR / "config.json", tmp_path / "config.json")
    return tmp_path


def test_missing_key_is_named(tmp_path: Path) -> None:
    name = "transformer.transformer_blocks.1.mlp.up_proj.weight"
    model_dir = _checkpoint_with(tmp_path, lambda s: s.pop(name))
    with pytest.raises(CheckpointError, match=f"missing keys: {re.escape(name)}"):
        load_dit(model_dir)


def test_missing_projector_key_is_named(tmp_path: Path) -> None:
    model_dir = _checkpoint_with(tmp_path, lambda s: s.pop("transformer.projectors.0.4.bias"))
    with pytest.raises(CheckpointError, match=r"missing keys: transformer\.projectors\.0\.4\.bias"):
        load_dit(model_dir)


def test_unexpected_key_is_named(tmp_path: Path) -> None:
    def add(state: dict) -> None:
        state["transformer.long_skip_connection.weight"] = torch.zeros(128, 256)

    with pytest.raises(CheckpointError, match=r"unexpected keys: transformer\.long_skip_connection\.weight"):
        load_dit(_checkpoint_with(tmp_path, add))


def test_unprefixed_keys_are_unexpected(tmp_path: Path) -> None:
    def strip(state: dict) -> None:
        for name in list(state):
            state[name.removeprefix("transformer.")] = state.pop(name)

    with pytest.raises(CheckpointError, match=r"missing keys: .*unexpected keys: input_embed\.proj\.bias"):
        load_dit(_checkpoint_with(tmp_path, strip))


def test_wrong_shape_is_named(tmp_path: Path) -> None:
    def widen(state: dict) -> None:
        state["transformer.proj_out.bias"] = torch.zeros(65)

    message = "transformer.proj_out.bias has shape (65,), expected (64,)"
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_dit(_checkpoint_with(tmp_path, widen))


def test_projectors_are_accepted_and_dropped() -> None:
    model = load_dit(FIXTURE_DIR)
    assert not hasattr(model, "projectors")
    assert not any(name.startswith("projectors") for name in model.state_dict())


def test_empty_model_dir_is_a_failed_precondition(tmp_path: Path) -> None:
    with pytest.raises(FailedPreconditionError, match=r"model\.safetensors"):
        DiffusionEngine.load(tmp_path)


def test_missing_config_is_a_failed_precondition(tmp_path: Path) -> None:
    shutil.copy(FIXTURE_DIR / "model.safetensors", tmp_path / "model.safetensors")
    with pytest.raises(FailedPreconditionError, match=r"config\.json or model\.json"):
        DiffusionEngine.load(tmp_path)


def test_demo_checkpoint_is_deterministic_and_loads_strictly(tmp_path: Path) -> None:
    first = write_demo_checkpoint(tmp_path / "a")
    second = write_demo_checkpoint(tmp_path / "b")
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    keys = load_file(str(first / "model.safetensors")).keys()
    assert all(name.startswith("transformer.") for name in keys)
    assert "transformer.projectors.0.4.weight" in keys
    assert load_dit(first).config == DEMO_CONFIG
