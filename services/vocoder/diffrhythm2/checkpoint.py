"""Loads the published decoder files (decoder.json + decoder.bin) into our generator.

decoder.bin is `torch.save({"generator": state_dict})` with every convolution in weight-norm form
(`weight_g`, `weight_v`). The file is read with `weights_only=True` (no pickled code runs), the
keys are checked strictly against the network the config describes, and each weight-norm pair is
fused into a plain float32 weight (w = g * v / ||v||, the norm taken per index of dimension 0), so
the network runs without weight-norm hooks. A file stored in bf16 or fp16 loads into the same float32
network, its pairs fused in float32, as the reference does.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from services.runtime.errors import FailedPreconditionError
from services.vocoder.diffrhythm2.bigvgan import BigVGANGenerator, DecoderConfig

CONFIG_FILE = "decoder.json"
WEIGHTS_FILE = "decoder.bin"
WEIGHT_NORM_SUFFIXES = ("weight_g", "weight_v")


class CheckpointMismatchError(FailedPreconditionError):
    """decoder.bin does not fit the network decoder.json describes; names every offending key."""

    def __init__(self, path: Path, missing: list[str], unexpected: list[str], wrong_shape: list[str]) -> None:
        parts = []
        if missing:
            parts.append(f"missing keys: {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {', '.join(unexpected)}")
        if wrong_shape:
            parts.append(f"wrong shapes: {', '.join(wrong_shape)}")
        super().__init__(f"{path} does not match {CONFIG_FILE}: " + "; ".join(parts))
        self.missing = missing
        self.unexpected = unexpected
        self.wrong_shape = wrong_shape


def _weight_norm_names(model: nn.Module) -> set[str]:
    """Names of the conv weights that the published file stores as weight-norm pairs."""
    convs = (nn.Conv1d, nn.ConvTranspose1d)
    return {f"{name}.weight" for name, module in model.named_modules() if isinstance(module, convs)}


def published_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """The keys and shapes a decoder.bin for `model` holds, weight-norm pairs included."""
    wrapped = _weight_norm_names(model)
    shapes: dict[str, tuple[int, ...]] = {}
    for key, tensor in model.state_dict().items():
        shape = tuple(tensor.shape)
        if key in wrapped:
            prefix = key[: -len("weight")]
            shapes[prefix + "weight_g"] = (shape[0],) + (1,) * (len(shape) - 1)
            shapes[prefix + "weight_v"] = shape
        else:
            shapes[key] = shape
    return shapes


def fuse_weight_norm(magnitude: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """The plain float32 weight g * v / ||v||, with the norm over every dimension but the first.

    The pair is fused in float32 whatever precision the file stores it in, as the reference does (it
    loads the file into a float32 network, then removes the weight norm): fusing a bf16 or fp16 pair
    in its own precision rounds the norm and the product and moves the audio by up to 1e-4.
    """
    magnitude, direction = magnitude.float(), direction.float()
    norm = direction.norm(p=2, dim=tuple(range(1, direction.dim())), keepdim=True)
    return direction * (magnitude / norm)


def _fused_state(raw: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for key in _weight_norm_names(model):
        prefix = key[: -len("weight")]
        state[key] = fuse_weight_norm(raw[prefix + "weight_g"], raw[prefix + "weight_v"])
    for key, tensor in raw.items():
        if not key.endswith(WEIGHT_NORM_SUFFIXES):
            state[key] = tensor
    return state


def read_generator_state(path: Path) -> dict[str, torch.Tensor]:
    """The `generator` state dict from decoder.bin, read without unpickling code."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file is one failure: no usable model
        raise FailedPreconditionError(f"{path} is not a readable torch checkpoint: {exc}") from exc
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("generator"), dict):
        raise FailedPreconditionError(f"{path} has no 'generator' state dict")
    return checkpoint["generator"]


def load_generator(model_dir: Path) -> BigVGANGenerator:
    """Build the generator from decoder.json and load decoder.bin strictly, weight norm fused, in eval mode.

    Raises FailedPreconditionError when a file is missing or unreadable and CheckpointMismatchError
    (a FailedPreconditionError) naming the missing, unexpected or wrongly shaped keys.
    """
    model_dir = Path(model_dir)
    config_path, weights_path = model_dir / CONFIG_FILE, model_dir / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FailedPreconditionError(f"no vocoder model: {path} does not exist")
    try:
        config = DecoderConfig.from_json(config_path)
    except (ValueError, KeyError, TypeError) as exc:
        raise FailedPreconditionError(f"{config_path} is not a usable decoder config: {exc}") from exc
    model = BigVGANGenerator(config)
    raw = read_generator_state(weights_path)
    expected = published_shapes(model)
    missing = sorted(expected.keys() - raw.keys())
    unexpected = sorted(raw.keys() - expected.keys())
    wrong_shape = sorted(
        f"{key} {tuple(raw[key].shape)} != {expected[key]}"
        for key in expected.keys() & raw.keys()
        if tuple(raw[key].shape) != expected[key]
    )
    if missing or unexpected or wrong_shape:
        raise CheckpointMismatchError(weights_path, missing, unexpected, wrong_shape)
    model.load_state_dict(_fused_state(raw, model), strict=True)
    return model.eval().requires_grad_(False)
