"""The published checkpoint layouts load the same model in every stage: one safetensors file, a pickled
pytorch_model.bin, shards with an index, EnCodec in either weight-norm naming; a checkpoint that does
not fit its config is refused naming the tensor."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from services.diffusion.musicgen.engine import MusicgenEngine
from services.runtime.errors import FailedPreconditionError
from services.runtime.hub_checkpoint import weight_files
from services.style.musicgen.engine import MusicgenStyleEngine
from services.vocoder.musicgen.engine import MusicgenVocoderEngine
from tests.musicgen.conftest import case_request, find_case, song_codes

SIDE_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json")


def copy_without_weights(source: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for name in SIDE_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, target / name)
    return target


def outputs(folder: Path, fixture) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Text states, codes and audio of the fixture's sampled case through the three stages."""
    case = find_case(fixture, "sampled")
    states = (
        MusicgenStyleEngine.load(folder, text_cache_size=0)
        .embed_text(fixture.case["prompts"][0]["text"])
        .vector
    )
    codes = song_codes(MusicgenEngine.load(folder).generate(case_request(fixture, case)))
    return states, codes, MusicgenVocoderEngine.load(folder).decode(codes)


@pytest.fixture(scope="module")
def reference(fixtures):
    fixture = fixtures["musicgen-tiny"]
    return outputs(fixture.folder, fixture)


def assert_same(got, expected) -> None:
    for ours, theirs in zip(got, expected, strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_pytorch_model_bin_loads_the_same(tmp_path, fixtures, reference):
    fixture = fixtures["musicgen-tiny"]
    folder = copy_without_weights(fixture.folder, tmp_path / "bin")
    torch.save(load_file(fixture.folder / "model.safetensors"), folder / "pytorch_model.bin")
    assert weight_files(folder) == [folder / "pytorch_model.bin"]
    assert_same(outputs(folder, fixture), reference)


def test_sharded_safetensors_load_the_same(tmp_path, fixtures, reference):
    fixture = fixtures["musicgen-tiny"]
    folder = copy_without_weights(fixture.folder, tmp_path / "shards")
    tensors = load_file(fixture.folder / "model.safetensors")
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, keys in shards.items():
        save_file({key: tensors[key] for key in keys}, folder / shard)
    index = {"weight_map": {key: shard for shard, keys in shards.items() for key in keys}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    assert [path.name for path in weight_files(folder)] == sorted(shards)
    assert_same(outputs(folder, fixture), reference)
    # Two files make the revision: the sha256 of their names and hashes.
    assert MusicgenEngine.load(folder).info.revision != MusicgenEngine.load(fixture.folder).info.revision


def test_transformers_5_weight_norm_names_load_the_same(tmp_path, fixtures, reference):
    fixture = fixtures["musicgen-tiny"]
    folder = copy_without_weights(fixture.folder, tmp_path / "parametrizations")
    renamed = {
        key.replace("weight_g", "parametrizations.weight.original0").replace(
            "weight_v", "parametrizations.weight.original1"
        ): value
        for key, value in load_file(fixture.folder / "model.safetensors").items()
    }
    assert any("original0" in key for key in renamed)
    save_file(renamed, folder / "model.safetensors")
    assert_same(outputs(folder, fixture), reference)


@pytest.mark.parametrize(
    ("change", "stage", "named"),
    [
        ("drop:decoder.lm_heads.3.weight", MusicgenEngine, "decoder.lm_heads.3.weight"),
        ("add:decoder.model.decoder.extra.weight", MusicgenEngine, "decoder.model.decoder.extra.weight"),
        ("drop:text_encoder.encoder.final_layer_norm.weight", MusicgenStyleEngine, "final_layer_norm"),
        ("drop:audio_encoder.decoder.layers.15.conv.weight_g", MusicgenVocoderEngine, "layers.15.conv"),
        ("shape:enc_to_dec_proj.weight", MusicgenEngine, "enc_to_dec_proj.weight"),
    ],
)
def test_a_checkpoint_that_does_not_fit_is_refused(tmp_path, fixtures, change, stage, named):
    fixture = fixtures["musicgen-tiny"]
    folder = copy_without_weights(fixture.folder, tmp_path / "bad")
    tensors = load_file(fixture.folder / "model.safetensors")
    action, key = change.split(":")
    if action == "drop":
        del tensors[key]
    elif action == "add":
        tensors[key] = torch.zeros(3)
    else:
        tensors[key] = torch.zeros(5, 5)
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(FailedPreconditionError) as raised:
        stage.load(folder)
    assert raised.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert named in raised.value.message


def test_a_folder_without_weights_is_refused(tmp_path, fixtures):
    folder = copy_without_weights(fixtures["musicgen-tiny"].folder, tmp_path / "empty")
    for stage in (MusicgenEngine, MusicgenStyleEngine, MusicgenVocoderEngine):
        with pytest.raises(FailedPreconditionError, match="no weights"):
            stage.load(folder)
