"""The tiny demo models (mono, stereo, melody) load and run in every stage; the Hub lists name the
published checkpoints and pick their weight files."""

from __future__ import annotations

import fnmatch
import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from gateway.musicgen_hub import HUB_MODELS, select_weight_files
from services.diffusion.engine import GenerationRequest
from services.diffusion.musicgen.demo import TOKENIZER_DIR, TOKENIZER_FILES, write_demo_model
from services.diffusion.musicgen.engine import MusicgenEngine
from services.runtime.model_info import MANIFEST_FILE, model_name, sha256_file
from services.style.musicgen.engine import MusicgenStyleEngine
from services.vocoder.musicgen.engine import MusicgenVocoderEngine

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("kind", "channels", "codebooks"), [("mono", 1, 4), ("stereo", 2, 8), ("melody", 1, 4)]
)
def test_demo_model_runs_through_the_three_stages(tmp_path, kind, channels, codebooks):
    folder = write_demo_model(tmp_path / kind, kind)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert manifest["name"] == f"musicgen-{kind}-demo" == model_name(folder)
    assert manifest["family"] == "musicgen"
    assert set(manifest["files"]) == {
        "config.json",
        "generation_config.json",
        "preprocessor_config.json",
        "model.safetensors",
        "spiece.model",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    }
    for file_name, entry in manifest["files"].items():
        assert entry == {
            "sha256": sha256_file(folder / file_name),
            "size": (folder / file_name).stat().st_size,
        }

    style = MusicgenStyleEngine.load(folder)
    states = style.embed_text("upbeat synthwave with a driving bassline").vector
    melody = None
    if kind == "melody":
        tone = np.sin(2 * np.pi * 261.63 * np.arange(32000) / 32000).astype(np.float32)
        melody = style.embed_waveform(tone[None], 32000).vector
        assert (melody.argmax(axis=1) == 0).all()  # C
    generation = MusicgenEngine.load(folder)
    assert generation.info.name == f"musicgen-{kind}-demo"
    codes = np.concatenate(
        [
            b.frames
            for b in generation.generate(
                GenerationRequest(style=states, melody=melody, seed=1, max_frames=30)
            )
        ]
    )
    assert codes.shape == (30, codebooks)
    audio = MusicgenVocoderEngine.load(folder).decode(codes)
    assert audio.shape == (channels, 30 * 640)
    assert np.isfinite(audio).all() and 0.0 < np.abs(audio).max() <= 1.0


def test_demo_weights_are_seeded(tmp_path):
    first = write_demo_model(tmp_path / "a", "mono")
    second = write_demo_model(tmp_path / "b", "mono", name="other")
    assert sha256_file(first / "model.safetensors") == sha256_file(second / "model.safetensors")
    assert model_name(second) == "other"


def test_hub_lists_the_published_checkpoints():
    assert set(HUB_MODELS) == {
        "musicgen-small",
        "musicgen-medium",
        "musicgen-large",
        "musicgen-melody",
        "musicgen-melody-large",
        "musicgen-stereo-small",
        "musicgen-stereo-medium",
        "musicgen-stereo-large",
        "musicgen-stereo-melody",
        "musicgen-stereo-melody-large",
    }
    melody = HUB_MODELS["musicgen-stereo-melody"]
    assert (melody.repo_id, melody.model_type, melody.channels) == (
        "facebook/musicgen-stereo-melody",
        "musicgen_melody",
        2,
    )
    assert {"tokenizer.json", "spiece.model", "config.json"} <= set(HUB_MODELS["musicgen-small"].files)


def test_weight_files_are_picked_from_a_listing():
    assert select_weight_files(["model.safetensors", "state_dict.bin", "config.json"]) == (
        "model.safetensors",
    )
    sharded = [
        "model.safetensors.index.json",
        "model-00002-of-00002.safetensors",
        "model-00001-of-00002.safetensors",
    ]
    assert select_weight_files(sharded) == (
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    )
    assert select_weight_files(["pytorch_model.bin", "compression_state_dict.bin"]) == ("pytorch_model.bin",)
    with pytest.raises(ValueError, match=r"no model\.safetensors"):
        select_weight_files(["state_dict.bin", "compression_state_dict.bin"])


def test_the_wheel_ships_the_demo_tokenizer():
    """`songsmith models demo` copies the tokenizer from the installed package: every file of
    demo_tokenizer/ matches a package-data pattern of pyproject.toml."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["*"]
    for file_name in TOKENIZER_FILES:
        assert (TOKENIZER_DIR / file_name).is_file()
        assert any(fnmatch.fnmatch(file_name, pattern) for pattern in patterns), file_name
