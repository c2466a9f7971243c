"""Strict loading of the published `cfm_model.pt` into our DiT.

The file is a `torch.save` dict whose `model_state_dict` holds the CFM wrapper's parameters (every
DiT key prefixed `transformer.`, no buffers). It is read with `torch.load(weights_only=True)`: tensors
and plain containers only, never arbitrary pickled objects. Whether it is the base (95 s, 2048-frame)
or the full (96..285 s, 6144-frame) model shows in its keys: only the full model has the duration
embedding. Every other key must match the config exactly; a missing or unexpected key is named.
"""

from __future__ import annotations

from pathlib import Path

import torch

from services.diffusion.diffrhythm1.dit import BASE_MAX_FRAMES, CONFIG_FILE, FULL_MAX_FRAMES, DiT, DiTConfig

WEIGHTS_FILE = "cfm_model.pt"
STATE_ENTRY = "model_state_dict"
KEY_PREFIX = "transformer."
DURATION_KEY = KEY_PREFIX + "duration_time_embed.time_mlp.0.weight"
SHOWN_KEYS = 8


class CheckpointError(ValueError):
    """The checkpoint is not a DiffRhythm v1 CFM state dict matching the config."""


def _listing(keys: set[str]) -> str:
    shown = sorted(keys)[:SHOWN_KEYS]
    more = f" (and {len(keys) - len(shown)} more)" if len(keys) > len(shown) else ""
    return ", ".join(shown) + more


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The CFM parameters of a `cfm_model.pt` (weights only); CheckpointError for another layout."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError or OSError for bad files
        raise CheckpointError(f"{path.name} cannot be read as a weights-only checkpoint: {exc}") from exc
    state = checkpoint.get(STATE_ENTRY) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path.name} holds no {STATE_ENTRY!r} dict")
    return state


def context_frames(state: dict[str, torch.Tensor]) -> int:
    """6144 for the full model (it has the duration embedding), 2048 for the base model."""
    return FULL_MAX_FRAMES if DURATION_KEY in state else BASE_MAX_FRAMES


def load_state_dict_strict(model: DiT, state: dict[str, torch.Tensor]) -> None:
    """Load the published parameters into `model`, cast to its dtype; CheckpointError naming every
    missing or unexpected key and every shape mismatch."""
    expected = model.state_dict()
    wanted = {KEY_PREFIX + name for name in expected}
    missing, unexpected = wanted - state.keys(), state.keys() - wanted
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
        raise CheckpointError(f"{WEIGHTS_FILE} does not match {CONFIG_FILE}: " + "; ".join(problems))
    model.load_state_dict({name[len(KEY_PREFIX) :]: tensor for name, tensor in state.items()}, strict=True)


def load_dit(model_dir: Path, device: str = "cpu", dtype: torch.dtype = torch.float32) -> DiT:
    """Build the DiT from `model_dir`'s config and checkpoint, strictly, in eval mode on `device`."""
    model_dir = Path(model_dir)
    state = read_state_dict(model_dir / WEIGHTS_FILE)
    config = DiTConfig.from_model_dir(model_dir, context_frames(state))
    with torch.device("meta"):
        model = DiT(config)
    model = model.to_empty(device="cpu")
    load_state_dict_strict(model, state)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)
