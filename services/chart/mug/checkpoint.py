"""The published `model.ckpt`, loaded unchanged and strictly into our networks.

The file is a `torch.save` of a Lightning-style dict; only its `state_dict` is read, with
`torch.load(..., weights_only=True)`. Its keys: `model.unet_model.*`, `model.wave_model.*`,
`model.first_stage_model.decoder.*`, `model.cond_stage_model.embedding.weight` and the top-level
`alphas_cumprod` are loaded; the note VAE's encoder (`model.first_stage_model.encoder.*`) and the
other DDPM schedule buffers are training-only and are accepted without being loaded. Any other key,
any missing key and any shape that differs from what `model.yaml` describes is an error naming it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from services.chart.mug.audio_encoder import AudioEncoder
from services.chart.mug.config import WEIGHTS_FILE, MugConfig
from services.chart.mug.note_decoder import NoteDecoder
from services.chart.mug.unet import UNet
from services.runtime.errors import FailedPreconditionError

NETWORK_PREFIX = "model."
SCHEDULE_KEY = "alphas_cumprod"
TRAINING_ONLY_PREFIXES = ("model.first_stage_model.encoder.",)
TRAINING_ONLY_KEYS = frozenset(
    {
        "betas",
        "alphas_cumprod_prev",
        "sqrt_alphas_cumprod",
        "sqrt_one_minus_alphas_cumprod",
        "log_one_minus_alphas_cumprod",
        "sqrt_recip_alphas_cumprod",
        "sqrt_recipm1_alphas_cumprod",
        "posterior_variance",
        "posterior_log_variance_clipped",
        "posterior_mean_coef1",
        "posterior_mean_coef2",
    }
)
SHOWN_KEYS = 8


class CheckpointError(FailedPreconditionError):
    """model.ckpt does not match the networks model.yaml describes."""


class MugDiffusion(nn.Module):
    """Every network inference uses, named as in the checkpoint (under `model.`)."""

    def __init__(self, config: MugConfig, feature_rows: int) -> None:
        super().__init__()
        self.config = config
        self.unet_model = UNet(config.unet)
        self.wave_model = AudioEncoder(config.audio_encoder)
        self.first_stage_model = nn.Module()
        self.first_stage_model.decoder = NoteDecoder(config.note_decoder)
        self.cond_stage_model = nn.Module()
        self.cond_stage_model.embedding = nn.Embedding(feature_rows, config.embed_dim)
        self.register_buffer("alphas_cumprod", torch.zeros(config.timesteps), persistent=False)

    @property
    def decoder(self) -> NoteDecoder:
        """The note VAE's decoder."""
        return self.first_stage_model.decoder

    @property
    def embedding(self) -> nn.Embedding:
        """The feature-prompt embedding table."""
        return self.cond_stage_model.embedding

    def published_state(self) -> dict[str, torch.Tensor]:
        """This model's tensors under their published checkpoint keys (what `load_state` expects,
        without the training-only keys)."""
        state = {NETWORK_PREFIX + name: tensor for name, tensor in self.state_dict().items()}
        state[SCHEDULE_KEY] = self.alphas_cumprod
        return state

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load a published state dict strictly; CheckpointError naming every missing or unexpected
        key and every shape mismatch."""
        expected = self.published_state()
        used = {key for key in state if not _training_only(key)}
        problems = []
        missing = expected.keys() - used
        unexpected = used - expected.keys()
        if missing:
            problems.append(f"missing keys: {_listing(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {_listing(unexpected)}")
        for key, tensor in expected.items():
            given = state.get(key)
            if given is not None and tuple(given.shape) != tuple(tensor.shape):
                problems.append(f"{key} has shape {tuple(given.shape)}, expected {tuple(tensor.shape)}")
        if problems:
            raise CheckpointError(f"{WEIGHTS_FILE} does not match model.yaml: " + "; ".join(problems))
        networks = {
            key[len(NETWORK_PREFIX) :]: value
            for key, value in state.items()
            if key in expected and key.startswith(NETWORK_PREFIX)
        }
        self.load_state_dict(networks, strict=True)
        self.alphas_cumprod.copy_(state[SCHEDULE_KEY].to(torch.float32))


def build_networks(config: MugConfig, feature_rows: int) -> MugDiffusion:
    """The networks `config` describes (random weights); CheckpointError when the sizes cannot make
    them (a group count that does not divide a channel count, for example)."""
    try:
        return MugDiffusion(config, feature_rows)
    except (ValueError, RuntimeError) as exc:
        raise CheckpointError(f"model.yaml describes networks that cannot be built: {exc}") from exc


def _training_only(key: str) -> bool:
    return key in TRAINING_ONLY_KEYS or key.startswith(TRAINING_ONLY_PREFIXES)


def _listing(keys: set[str]) -> str:
    shown = sorted(keys)[:SHOWN_KEYS]
    more = f" (and {len(keys) - len(shown)} more)" if len(keys) > len(shown) else ""
    return ", ".join(shown) + more


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The `state_dict` of a Lightning-style checkpoint, read with weights_only=True (memory-mapped
    when the file is in torch's zip format, so unused entries are never read)."""
    try:
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise FailedPreconditionError(f"no {WEIGHTS_FILE} in {path.parent}") from exc
    except Exception as exc:
        raise FailedPreconditionError(f"cannot read {path} as a weights-only checkpoint: {exc}") from exc
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} has no state_dict of tensors")
    return state
