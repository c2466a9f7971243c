"""The published checkpoint loads strictly; the config is read and checked; the family is detected."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from services.chart.families import CHART_FAMILIES
from services.chart.mug.checkpoint import CheckpointError, MugDiffusion, read_state_dict
from services.chart.mug.config import MugConfig
from services.chart.mug.features import FeaturePrompt
from services.runtime.errors import FailedPreconditionError


@pytest.fixture(scope="module")
def published(fixture_dir: Path) -> tuple[MugConfig, FeaturePrompt, dict]:
    """The fixture's config, feature list and state dict."""
    config = MugConfig.load(fixture_dir)
    return (
        config,
        FeaturePrompt.load(fixture_dir / config.feature_yaml),
        read_state_dict(fixture_dir / "model.ckpt"),
    )


def _load(published, state: dict) -> None:
    config, prompt, _ = published
    MugDiffusion(config, prompt.rows).load_state(state)


def test_every_published_tensor_is_used_or_training_only(published) -> None:
    config, prompt, state = published
    model = MugDiffusion(config, prompt.rows)
    model.load_state(state)
    loaded = set(model.published_state())
    ignored = set(state) - loaded
    assert ignored and all(k.startswith("model.first_stage_model.encoder.") or "." not in k for k in ignored)
    assert torch.equal(model.alphas_cumprod, state["alphas_cumprod"])
    assert torch.equal(model.unet_model.input_blocks[2][1].s4_model.kernel.kernel.L, torch.tensor(512))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda s: s.pop("model.unet_model.out.2.bias"), "missing keys: model.unet_model.out.2.bias"),
        (lambda s: s.pop("alphas_cumprod"), "missing keys: alphas_cumprod"),
        (
            lambda s: s.update({"model.unet_model.extra": torch.zeros(1)}),
            "unexpected keys: model.unet_model.extra",
        ),
        (lambda s: s.update({"model_ema.decay": torch.zeros(1)}), "unexpected keys: model_ema.decay"),
        (
            lambda s: s.update({"model.cond_stage_model.embedding.weight": torch.zeros(300, 32)}),
            "model.cond_stage_model.embedding.weight has shape (300, 32), expected (329, 32)",
        ),
    ],
)
def test_strict_loading_names_the_tensor(published, change, named: str) -> None:
    state = dict(published[2])
    change(state)
    with pytest.raises(CheckpointError) as caught:
        _load(published, state)
    assert named in caught.value.message


def test_only_weights_are_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "model.ckpt"
    path.write_bytes(pickle.dumps({"state_dict": {}, "callback": Path("/")}))
    with pytest.raises(FailedPreconditionError, match="weights-only"):
        read_state_dict(path)
    torch.save({"epoch": 3}, path)
    with pytest.raises(CheckpointError, match="no state_dict"):
        read_state_dict(path)


def _copy_with_config(fixture_dir: Path, folder: Path, edit) -> Path:
    shutil.copytree(fixture_dir, folder)
    tree = yaml.safe_load((folder / "model.yaml").read_text())
    edit(tree)
    (folder / "model.yaml").write_text(yaml.safe_dump(tree))
    return folder


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda t: t["model"]["params"]["unet_config"]["params"].update(lstm_layer=True), "lstm_layer"),
        (lambda t: t["model"]["params"].update(parameterization="x0"), "parameterization"),
        (
            lambda t: t["model"]["params"]["wave_stage_config"].update(target="mug.cond.wave.STFTEncoder"),
            "target",
        ),
        (lambda t: t["model"]["params"]["unet_config"]["params"].update(model_channels=64), "does not match"),
        (
            lambda t: t["model"]["params"]["unet_config"]["params"].update(model_channels=48),
            "cannot be built",
        ),
        (
            lambda t: t["model"]["params"]["cond_stage_config"]["params"].update(path_to_yaml="x.yaml"),
            "x.yaml",
        ),
        (lambda t: t["data"]["params"]["common_params"].pop("n_fft"), "n_fft"),
    ],
)
def test_config_problems_are_failed_precondition(fixture_dir: Path, tmp_path: Path, edit, words: str) -> None:
    folder = _copy_with_config(fixture_dir, tmp_path / "model", edit)
    with pytest.raises(FailedPreconditionError) as caught:
        CHART_FAMILIES.load(folder, None)
    assert words in caught.value.message


def test_family_detection(fixture_dir: Path, tmp_path: Path) -> None:
    assert CHART_FAMILIES.detect(fixture_dir).name == "mug"
    (tmp_path / "model.yaml").write_text("model: {params: {}}\n")
    (tmp_path / "model.ckpt").write_bytes(b"")
    with pytest.raises(FailedPreconditionError, match=r"model\.ckpt \+ model\.yaml"):
        CHART_FAMILIES.detect(tmp_path)
