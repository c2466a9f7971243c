"""The CFM sampler: Euler over the reference's time grid, guided against the negative style.

For each song of the batch (a candidate), a CPU generator seeded with that candidate's seed draws,
in the reference's order: in edit mode the VAE sample noise of the whole reference song
([64, frames] channel-major, as `randn_like` over the encoder's [b, 64, T] mean), then the initial
noise [frames, 64]. The time grid is `linspace(0, 1, steps)`: `steps - 1` Euler updates
y += (t[k+1] - t[k]) v(t[k], y), with v = cond + (cond - uncond) * cfg. The unconditional branch
keeps x and the time inputs, zeroes the edit condition and every text id, and swaps the style for
the negative style. Edited songs keep every frame outside the regenerated spans from the reference
latent, which is also the condition inside the kept frames.

Beyond the reference's arithmetic (which `DiT.forward` gives call by call) the sampler computes the
text features once per song instead of at every step, and runs both guidance branches of every
candidate as one batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional

from services.diffusion.diffrhythm1.dit import DiT
from services.diffusion.engine import GenerationProgress
from services.runtime.cancellation import CancellationToken

CFG_OFF = 1e-5  # below this guidance strength the unconditional branch is skipped, as in the reference
VAE_STD_FLOOR = 1e-4


@dataclass(frozen=True)
class SongInputs:
    """What a song is conditioned on: token ids [frames] int64, the style [512] (fp16-rounded), and
    the start time and duration scalars (fp16-rounded)."""

    tokens: np.ndarray
    style: np.ndarray
    start_time: float
    duration: float

    @property
    def frames(self) -> int:
        """Latent frames of the song."""
        return len(self.tokens)


@dataclass(frozen=True)
class EditPlan:
    """An edit of a reference song: its VAE encoding [reference frames, 128] (mean | scale) and which
    of the song's frames to regenerate ([frames] bool; the others are kept from the reference)."""

    encoding: np.ndarray
    regenerate: np.ndarray


@dataclass(frozen=True)
class SampledSongs:
    """The finished songs' latents, one [frames, 64] float32 array per candidate, in seed order."""

    latents: list[np.ndarray]


def reference_latent(encoding: np.ndarray, frames: int, generator: torch.Generator) -> torch.Tensor:
    """The reference song's VAE sample mean + N(0, 1) * (softplus(scale) + 1e-4), drawn channel-major
    over the whole encoding as the reference draws it, cut to the song's `frames`: [frames, 64]."""
    mean, scale = torch.from_numpy(np.ascontiguousarray(encoding.T, np.float32)).chunk(2, dim=0)
    noise = torch.randn(mean.shape, generator=generator)
    latent = noise * (functional.softplus(scale) + VAE_STD_FLOOR) + mean
    return latent.T[:frames]


def initial_state(
    seed: int, frames: int, channels: int, edit: EditPlan | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A candidate's initial noise [frames, channels] and, when editing, its reference latent."""
    generator = torch.Generator().manual_seed(seed)
    reference = reference_latent(edit.encoding, frames, generator) if edit is not None else None
    return torch.randn(frames, channels, generator=generator), reference


class CfmSampler:
    """Samples whole songs with a loaded DiT and the negative style vector."""

    def __init__(self, model: DiT, negative_style: np.ndarray) -> None:
        """`negative_style` [512] is the style of the unconditional branch (already fp16-rounded)."""
        self.model = model
        self.negative_style = negative_style

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The model's compute dtype."""
        return next(self.model.parameters()).dtype

    def sample(
        self,
        song: SongInputs,
        seeds: Sequence[int],
        steps: int,
        cfg_strength: float,
        edit: EditPlan | None = None,
        token: CancellationToken | None = None,
    ) -> Iterator[GenerationProgress | SampledSongs]:
        """Progress after every Euler update, then the songs of `seeds` (one candidate per seed)."""
        channels = self.model.config.mel_dim
        states = [initial_state(seed, song.frames, channels, edit) for seed in seeds]
        y = torch.stack([noise for noise, _ in states]).to(self.device)
        if edit is None:
            kept = None
            condition = torch.zeros_like(y)
        else:
            regenerate = torch.from_numpy(edit.regenerate)[:, None].to(self.device)
            kept = torch.stack([reference for _, reference in states]).to(self.device)
            condition = torch.where(regenerate, torch.zeros_like(kept), kept)
        with torch.inference_mode():
            branches = self._branches(song, condition, cfg_strength >= CFG_OFF)
            grid = torch.linspace(0, 1, steps)
            for step in range(steps - 1):
                if token is not None:
                    token.check()
                velocity = self._velocity(y, grid[step], branches, cfg_strength)
                y = y + (grid[step + 1] - grid[step]).to(self.device) * velocity
                yield GenerationProgress(step + 1, steps - 1)
            if kept is not None:
                y = torch.where(regenerate, y, kept)
        yield SampledSongs([song_latents.float().cpu().numpy() for song_latents in y])

    def _branches(
        self, song: SongInputs, condition: torch.Tensor, guided: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The step-invariant inputs of the batch: the conditional rows of every candidate, then (with
        guidance) their unconditional rows: condition, text features, style; and the time scalars."""
        model, device, dtype = self.model, self.device, self.dtype
        count = condition.shape[0]
        ids = torch.from_numpy(song.tokens)[None].to(device)
        text = model.embed_text(ids).expand(count, -1, -1)
        style = torch.from_numpy(song.style)[None].to(device, dtype).expand(count, -1)
        condition = condition.to(dtype)
        if guided:
            null_text = model.embed_text(torch.zeros_like(ids)).expand(count, -1, -1)
            negative = torch.from_numpy(self.negative_style)[None].to(device, dtype).expand(count, -1)
            condition = torch.cat((condition, torch.zeros_like(condition)))
            text, style = torch.cat((text, null_text)), torch.cat((style, negative))
        start = torch.tensor([song.start_time], device=device)
        duration = torch.tensor([song.duration], device=device)
        return condition, text.contiguous(), style.contiguous(), start, duration

    def _velocity(
        self,
        y: torch.Tensor,
        time: torch.Tensor,
        branches: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
        cfg_strength: float,
    ) -> torch.Tensor:
        condition, text, style, start, duration = branches
        rows = condition.shape[0]
        c = self.model.time_conditioning(time[None].to(self.device), start, duration).expand(rows, -1)
        x = y.to(self.dtype)
        if rows > y.shape[0]:
            x = torch.cat((x, x))
        out = self.model.run(x, condition, text, style, c).float()
        if rows == y.shape[0]:
            return out
        pred, null = out.chunk(2)
        return pred + (pred - null) * cfg_strength
