"""Every decoder.json the reference BigVGAN builds is accepted; what it cannot build is refused naming
the field (issue 18, item 10).

The reference floors each stage's channel count (`upsample_initial_channel // 2**stage`), offers the
AMPBlock2 residual block and the Snake activation, ignores kernel sizes and dilation rows beyond the
ones its stages and branches use, and never checks the rates against `fps`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from services.runtime.errors import FailedPreconditionError
from services.vocoder.diffrhythm2.bigvgan import BigVGANGenerator, DecoderConfig, Snake
from services.vocoder.diffrhythm2.checkpoint import load_generator, published_shapes
from services.vocoder.diffrhythm2.engine import VocoderEngine

FRAMES = 3


@pytest.fixture(scope="module")
def published(fixture_dir: Path) -> dict:
    """The fixture's decoder.json (the published layout, 64 channels wide)."""
    return json.loads((fixture_dir / "decoder.json").read_text())


def _write_decoder(folder: Path, config: dict) -> Path:
    """decoder.json and a seeded random decoder.bin in weight-norm form for `config`."""
    folder.mkdir()
    torch.manual_seed(0)
    model = BigVGANGenerator(DecoderConfig.from_dict(config))
    expected = published_shapes(model)
    state = {}
    for key, tensor in model.state_dict().items():
        prefix = key.removesuffix("weight")
        if prefix + "weight_g" in expected:
            state[prefix + "weight_g"] = tensor.norm(p=2, dim=tuple(range(1, tensor.dim())), keepdim=True)
            state[prefix + "weight_v"] = tensor.clone()
        else:
            state[key] = tensor
    torch.save({"generator": state}, folder / "decoder.bin")
    (folder / "decoder.json").write_text(json.dumps(config))
    return folder


def _decodes(folder: Path, samples_per_frame: int) -> VocoderEngine:
    engine = VocoderEngine.load(folder)
    latents = np.random.default_rng(1).standard_normal((FRAMES, 64)).astype(np.float32)
    audio = engine.decode(latents)
    assert audio.shape == (1, FRAMES * samples_per_frame)
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0
    return engine


def test_a_width_that_does_not_halve_evenly_is_floored(published: dict, tmp_path: Path) -> None:
    config = {**published, "upsample_initial_channel": 96}
    shapes = published_shapes(load_generator(_write_decoder(tmp_path / "d", config)))
    widths = [96, 48, 24, 12, 6, 3, 1]  # 96 // 2**stage, as the reference computes them
    for stage in range(6):
        kernel = published["upsample_kernel_sizes"][stage]
        assert shapes[f"ups.{stage}.0.weight_v"] == (widths[stage], widths[stage + 1], kernel)
        assert shapes[f"resblocks.{3 * stage}.convs1.0.weight_v"] == (widths[stage + 1],) * 2 + (3,)
    assert shapes["conv_post.weight_v"] == (1, 1, 7)
    _decodes(tmp_path / "d", 9600)


def test_ampblock2_with_snake_builds_with_the_reference_keys(published: dict, tmp_path: Path) -> None:
    config = {**published, "resblock": "2", "activation": "snake", "resblock_dilation_sizes": [[1, 3]] * 3}
    shapes = published_shapes(load_generator(_write_decoder(tmp_path / "d", config)))
    assert shapes["resblocks.0.convs.1.weight_v"] == (32, 32, 3)
    assert shapes["resblocks.0.activations.1.act.alpha"] == (32,)
    assert "resblocks.0.convs1.0.weight_v" not in shapes
    assert not any(key.endswith(".beta") for key in shapes)
    _decodes(tmp_path / "d", 9600)


def test_snake_is_x_plus_sin_squared_over_alpha() -> None:
    snake = Snake(3, logscale=True)
    snake.alpha.data = torch.tensor([0.0, 0.5, -1.0])
    x = torch.linspace(-2, 2, 12).reshape(1, 3, 4)
    alpha = torch.exp(snake.alpha)[None, :, None]
    torch.testing.assert_close(snake(x), x + torch.sin(alpha * x) ** 2 / (alpha + 1e-9), rtol=0, atol=1e-7)


def test_rates_need_not_match_fps_and_extra_kernels_are_ignored(published: dict, tmp_path: Path) -> None:
    """Rates 10·10·8·3·2·1 make 4800 samples per frame (10 Hz at 48 kHz whatever `fps` says); the last
    stage's kernel 4 and rate 1 differ by an odd number, so the network adds one sample at the end."""
    config = {
        **published,
        "upsample_rates": [10, 10, 8, 3, 2, 1],
        "upsample_kernel_sizes": [20, 20, 16, 7, 4, 4, 9],
        "resblock_dilation_sizes": [[1, 3, 5]] * 4,
    }
    engine = _decodes(_write_decoder(tmp_path / "d", config), 4800)
    assert engine.info.frame_rate == 10.0
    with torch.inference_mode():
        assert engine.generator(torch.zeros(1, 64, FRAMES)).shape[-1] > FRAMES * 4800


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"upsample_initial_channel": 32}, "upsample_initial_channel 32 leaves no channel"),
        (
            {"upsample_kernel_sizes": [20, 20, 16, 7, 4, 1]},
            "upsample_kernel_sizes[5] is 1, smaller than its rate 2",
        ),
        ({"upsample_kernel_sizes": [20, 20, 16, 7, 4]}, "upsample_kernel_sizes lists 5 kernels for 6"),
        ({"upsample_rates": []}, "upsample_rates [] must list"),
        ({"upsample_rates": [10, 10, 8, 3, 2, 0]}, "upsample_rates"),
        ({"resblock_kernel_sizes": [3, 6, 11]}, "resblock_kernel_sizes[1] 6"),
        ({"resblock_kernel_sizes": []}, "resblock_kernel_sizes [] must list"),
        ({"resblock_dilation_sizes": [[1, 3, 5]] * 2}, "resblock_dilation_sizes lists 2 rows for 3"),
        ({"resblock_dilation_sizes": [[1, 3, 5], [1, 0, 5], [1, 3, 5]]}, "resblock_dilation_sizes[1]"),
        ({"resblock": "3"}, "resblock '3'"),
        ({"activation": "gelu"}, "activation 'gelu'"),
        ({"in_channels": 0}, "in_channels"),
    ],
)
def test_what_the_reference_cannot_build_is_refused_naming_the_field(
    fixture_dir: Path, published: dict, tmp_path: Path, change: dict, field: str
) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "decoder.bin").write_bytes((fixture_dir / "decoder.bin").read_bytes())
    (folder / "decoder.json").write_text(json.dumps({**published, **change}))
    with pytest.raises(FailedPreconditionError, match="is not a usable decoder config") as caught:
        load_generator(folder)
    assert field in caught.value.message


def test_a_missing_required_key_is_named(published: dict) -> None:
    with pytest.raises(ValueError, match="lacks required keys: in_channels"):
        DecoderConfig.from_dict({k: v for k, v in published.items() if k != "in_channels"})
