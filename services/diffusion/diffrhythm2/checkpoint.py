"""Strict loading of the published DiT checkpoint (`model.safetensors` with `transformer.` keys)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from services.diffusion.diffrhythm2.dit import CONFIG_FILES, DiT, DiTConfig
from services.diffusion.onednn import set_onednn

WEIGHTS_FILE = "model.safetensors"
KEY_PREFIX = "transformer."
SHOWN_KEYS = 8


class CheckpointError(ValueError):
    """The checkpoint does not match the architecture its config describes."""


def missing_model_files(model_dir: Path) -> list[str]:
    """Names of the files a model directory lacks (empty when the DiT can be loaded)."""
    model_dir = Path(model_dir)
    missing = [] if (model_dir / WEIGHTS_FILE).is_file() else [WEIGHTS_FILE]
    if not any((model_dir / name).is_file() for name in CONFIG_FILES):
        missing.append(" or ".join(CONFIG_FILES))
    return missing


def _listing(keys: set[str]) -> str:
    shown = sorted(keys)[:SHOWN_KEYS]
    more = f" (and {len(keys) - len(shown)} more)" if len(keys) > len(shown) else ""
    return ", ".join(shown) + more


def load_state_dict_strict(model: DiT, state: dict[str, torch.Tensor]) -> None:
    """Load a published state dict (keys with the `transformer.` prefix) into `model`, strictly.

    Raises CheckpointError naming every missing or unexpected key and every shape mismatch.
    """
    expected = model.state_dict()
    wanted = {KEY_PREFIX + name for name in expected}
    missing = wanted - state.keys()
    unexpected = state.keys() - wanted
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    for name, tensor in expected.items():
        given = state.get(KEY_PREFIX + name)
        if given is not None and tuple(given.shape) != tuple(tensor.shape):
            problems.append(
                f"{KEY_PREFIX}{name} has shape {tuple(given.shape)}, expected {tuple(tensor.shape)}"
            )
    if problems:
        raise CheckpointError("checkpoint does not match the DiT config: " + "; ".join(problems))
    model.load_state_dict({name[len(KEY_PREFIX) :]: tensor for name, tensor in state.items()}, strict=True)


def load_dit(model_dir: Path, device: str = "cpu", dtype: torch.dtype = torch.float32) -> DiT:
    """Build the DiT from `model_dir`'s config, load its weights strictly, move and cast it, eval mode.

    Float32 products on CPU go through oneDNN when it works in this torch build (see onednn.py).
    """
    model_dir = Path(model_dir)
    config = DiTConfig.from_model_dir(model_dir)
    with torch.device("meta"):
        model = DiT(config)
    model = model.to_empty(device="cpu")
    load_state_dict_strict(model, load_file(str(model_dir / WEIGHTS_FILE)))
    model.drop_repa_projectors()
    model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    set_onednn(model, enabled=True)
    return model
