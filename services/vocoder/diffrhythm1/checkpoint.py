"""Reading the published `vae_model.pt` (a TorchScript archive) into our own Oobleck modules.

A TorchScript archive carries code, so it is opened only when its sha256 is the one the model
folder's manifest (`songsmith-model.json`, written by `songsmith models pull|demo`) pins for it.
Only its tensors are kept: they are loaded strictly into `OobleckVae` (a missing or unexpected
tensor is named) and the scripted module is dropped; the stage never runs archive code.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

import torch

from services.runtime.errors import FailedPreconditionError
from services.runtime.model_info import MANIFEST_FILE, read_manifest
from services.vocoder.diffrhythm1.oobleck import MULTIPLIERS, OobleckConfig, OobleckVae

WEIGHTS_FILE = "vae_model.pt"
WIDTH_KEY = "encoder.layers.0.weight"  # [channels, 2, 7]
SHOWN_KEYS = 8


def pinned_sha256(model_dir: Path, name: str) -> str | None:
    """The sha256 the model folder's manifest lists for file `name`, if any."""
    files = read_manifest(model_dir).get("files")
    entry = files.get(name) if isinstance(files, dict) else None
    digest = entry.get("sha256") if isinstance(entry, dict) else None
    return digest if isinstance(digest, str) else None


def read_pinned(model_dir: Path, name: str = WEIGHTS_FILE) -> tuple[bytes, str]:
    """The file's bytes and sha256 when the manifest pins exactly them (hashed from the same bytes
    that are then opened, so the file cannot change in between); FailedPreconditionError naming the
    file and the way to fix it otherwise."""
    path = Path(model_dir) / name
    if not path.is_file():
        raise FailedPreconditionError(
            f"no {name} in {model_dir}: run `songsmith models pull diffrhythm1` (or `songsmith models demo`)"
        )
    pinned = pinned_sha256(Path(model_dir), name)
    if pinned is None:
        raise FailedPreconditionError(
            f"{path} is a TorchScript archive and is only opened when {MANIFEST_FILE} pins its sha256; "
            "there is no pin: fetch it with `songsmith models pull diffrhythm1`, which verifies and pins it"
        )
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != pinned:
        raise FailedPreconditionError(
            f"{path} has sha256 {actual}, not the {pinned} that {MANIFEST_FILE} pins; it was changed after "
            "download: fetch it again with `songsmith models pull diffrhythm1`"
        )
    return data, actual


def _listing(keys: set[str]) -> str:
    shown = sorted(keys)[:SHOWN_KEYS]
    more = f" (and {len(keys) - len(shown)} more)" if len(keys) > len(shown) else ""
    return ", ".join(shown) + more


def vae_from_state_dict(state: dict[str, torch.Tensor]) -> OobleckVae:
    """Our VAE with `state`'s tensors (width read from the first encoder conv); FailedPreconditionError
    naming missing, unexpected or misshapen tensors."""
    first = state.get(WIDTH_KEY)
    if first is None or first.dim() != 3:
        raise FailedPreconditionError(f"{WEIGHTS_FILE} holds no Oobleck encoder ({WIDTH_KEY} is missing)")
    vae = OobleckVae(OobleckConfig(channels=first.shape[0]))
    expected = vae.state_dict()
    problems = []
    if missing := expected.keys() - state.keys():
        problems.append(f"missing tensors: {_listing(missing)}")
    if unexpected := state.keys() - expected.keys():
        problems.append(f"unexpected tensors: {_listing(unexpected)}")
    for key, tensor in expected.items():
        given = state.get(key)
        if given is not None and given.shape != tensor.shape:
            problems.append(f"{key} has shape {tuple(given.shape)}, expected {tuple(tensor.shape)}")
    if problems:
        widths = "/".join(str(first.shape[0] * m) for m in MULTIPLIERS)
        raise FailedPreconditionError(
            f"{WEIGHTS_FILE} is not an Oobleck VAE of widths {widths}: " + "; ".join(problems)
        )
    vae.load_state_dict(state, strict=True)
    return vae.eval().requires_grad_(False)


def load_vae(model_dir: Path) -> tuple[OobleckVae, str]:
    """Our VAE with the pinned archive's weights, and the archive's sha256."""
    data, digest = read_pinned(model_dir)
    with warnings.catch_warnings():
        # torch 2.13 deprecates TorchScript loading; the published file is TorchScript all the same.
        warnings.simplefilter("ignore", DeprecationWarning)
        archive = torch.jit.load(io.BytesIO(data), map_location="cpu")
    state = {name: tensor.detach().clone() for name, tensor in archive.state_dict().items()}
    return vae_from_state_dict(state), digest
