"""The BigVGAN generator and its loader against the reference fixture (parity, filters, strict loading)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from services.runtime.errors import FailedPreconditionError
from services.vocoder.diffrhythm2.bigvgan import kaiser_sinc_filter
from services.vocoder.diffrhythm2.checkpoint import CheckpointMismatchError, fuse_weight_norm, load_generator
from services.vocoder.diffrhythm2.engine import VocoderEngine


def test_one_shot_decode_matches_reference_audio(engine: VocoderEngine, fixture_dir: Path, reference_latents):
    expected = np.load(fixture_dir / "expected_audio.npy")
    audio = engine.decode(reference_latents)[0]
    assert audio.dtype == np.float32
    assert audio.shape == (1, 30 * 9600) and expected.shape == (30 * 9600,)
    assert np.abs(audio[0] - expected).max() <= 1e-5


def test_config_is_read_from_decoder_json(engine: VocoderEngine):
    config = engine.generator.config
    assert config.samples_per_frame == 9600
    assert (engine.sample_rate, engine.channels) == (48000, 64)
    assert config.use_tanh_at_final is False and config.use_bias_at_final is False
    assert engine.generator.conv_post.bias is None


def test_own_kaiser_sinc_filters_equal_the_published_buffers(fixture_dir: Path):
    state = torch.load(fixture_dir / "decoder.bin", weights_only=True)["generator"]
    ours = kaiser_sinc_filter(0.25, 0.3, 12)
    filters = [v for k, v in state.items() if k.endswith("filter")]
    assert len(filters) == 2 * (18 * 6 + 1)
    for published in filters:
        assert torch.equal(published, ours)


def test_weight_norm_fusion_matches_torch_parametrization():
    conv = torch.nn.utils.parametrizations.weight_norm(torch.nn.ConvTranspose1d(6, 3, 4, 2))
    magnitude = conv.parametrizations.weight.original0
    direction = conv.parametrizations.weight.original1
    torch.testing.assert_close(fuse_weight_norm(magnitude, direction), conv.weight, rtol=0, atol=1e-7)


def test_output_is_clamped_to_unit_range(fixture_dir: Path):
    generator = load_generator(fixture_dir)
    with torch.no_grad():
        audio = generator(torch.full((1, 64, 3), 50.0))
    assert audio.abs().max() <= 1.0
    assert audio.shape == (1, 1, 3 * 9600)


def _copy_model(fixture_dir: Path, target: Path, edit) -> Path:
    target.mkdir()
    shutil.copy(fixture_dir / "decoder.json", target / "decoder.json")
    state = torch.load(fixture_dir / "decoder.bin", weights_only=True)["generator"]
    edit(state)
    torch.save({"generator": state}, target / "decoder.bin")
    return target


def test_missing_key_is_named(fixture_dir: Path, tmp_path: Path):
    model = _copy_model(fixture_dir, tmp_path / "m", lambda s: s.pop("resblocks.4.convs2.1.weight_v"))
    with pytest.raises(
        CheckpointMismatchError, match=r"missing keys: resblocks\.4\.convs2\.1\.weight_v"
    ) as e:
        load_generator(model)
    assert e.value.missing == ["resblocks.4.convs2.1.weight_v"] and not e.value.unexpected


def test_unexpected_key_is_named(fixture_dir: Path, tmp_path: Path):
    model = _copy_model(fixture_dir, tmp_path / "m", lambda s: s.update({"conv_post.bias": torch.zeros(1)}))
    with pytest.raises(CheckpointMismatchError, match=r"unexpected keys: conv_post\.bias"):
        load_generator(model)


def test_fused_weights_instead_of_weight_norm_pairs_are_refused(fixture_dir: Path, tmp_path: Path):
    def fuse_pre(state):
        magnitude, direction = state.pop("conv_pre.weight_g"), state.pop("conv_pre.weight_v")
        state["conv_pre.weight"] = fuse_weight_norm(magnitude, direction)

    with pytest.raises(CheckpointMismatchError) as info:
        load_generator(_copy_model(fixture_dir, tmp_path / "m", fuse_pre))
    assert info.value.missing == ["conv_pre.weight_g", "conv_pre.weight_v"]
    assert info.value.unexpected == ["conv_pre.weight"]


def test_wrong_shape_is_named(fixture_dir: Path, tmp_path: Path):
    model = _copy_model(fixture_dir, tmp_path / "m", lambda s: s.update({"conv_pre.bias": torch.zeros(65)}))
    with pytest.raises(CheckpointMismatchError, match=r"wrong shapes: conv_pre\.bias \(65,\) != \(64,\)"):
        load_generator(model)


def test_config_that_does_not_fit_the_weights_is_refused(fixture_dir: Path, tmp_path: Path):
    model = _copy_model(fixture_dir, tmp_path / "m", lambda s: None)
    raw = json.loads((model / "decoder.json").read_text())
    raw["upsample_initial_channel"] = 128
    (model / "decoder.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointMismatchError, match="wrong shapes"):
        load_generator(model)


def test_missing_files_and_foreign_checkpoints_are_failed_preconditions(fixture_dir: Path, tmp_path: Path):
    with pytest.raises(FailedPreconditionError, match=r"decoder\.json does not exist"):
        VocoderEngine.load(tmp_path)
    model = tmp_path / "m"
    model.mkdir()
    shutil.copy(fixture_dir / "decoder.json", model / "decoder.json")
    torch.save({"model": {}}, model / "decoder.bin")
    with pytest.raises(FailedPreconditionError, match="no 'generator' state dict"):
        load_generator(model)
    (model / "decoder.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(FailedPreconditionError, match="not a readable torch checkpoint"):
        load_generator(model)
