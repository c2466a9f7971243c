"""The DDIM sampler (eta 0) with classifier-free guidance, as the reference's app runs it.

Timesteps: c = T // steps and the visited steps are 0, c, 2c, ... < T, each plus one, run from the
largest down; that is ceil(T / c) steps, which can exceed the requested count (12 -> 13). When
T - 1 is a multiple of c (steps 3, 9, 27, 36, 37, 101-111, 251-333 and 501-1000 for T = 1000) the
largest visited step is T itself, past the schedule: the reference fails with an index error there,
and the engine refuses those counts. Per step,
with a_t = alphas_cumprod[t] and a_prev the value at the previously visited step (at the last step,
alphas_cumprod[0], not 1): eps = e_u + s (e_c - e_u) from one batched UNet call on [unconditional;
conditional] (no unconditional half when s == 1), x0 = (x - sqrt(1 - a_t) eps) / sqrt(a_t),
x <- sqrt(a_prev) x0 + sqrt(1 - a_prev) eps; float32 throughout, no clipping.

Start noise: chart i of a request with seed s is `torch.randn(1, z_channels, L)` from a CPU generator
seeded with s + i, so a chart never depends on how many charts share its batch (the reference's app
instead draws all of them as one [count, 16, L] tensor from s; its first chart is ours).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from services.chart.mug.batch_invariant import at_least_two_rows
from services.chart.mug.unet import UNet, UNetPlan


def visited_timesteps(steps: int, num_timesteps: int) -> list[int]:
    """The timesteps a run of `steps` requested steps visits, largest first."""
    stride = num_timesteps // steps
    return [int(t) + 1 for t in np.arange(0, num_timesteps, stride)][::-1]


def start_noise(seeds: Sequence[int], shape: tuple[int, int]) -> torch.Tensor:
    """[len(seeds), *shape] float32: row i is `torch.randn(1, *shape)` from a generator seeded seeds[i]."""
    rows = [torch.randn((1, *shape), generator=torch.Generator().manual_seed(seed)) for seed in seeds]
    return torch.cat(rows)


@dataclass(frozen=True)
class Conditioning:
    """What the UNet sees besides the latent: the prompt contexts ([count, tokens, dim] each; the
    unconditional one is None without guidance) and the audio features, one map per UNet level
    ([1, channels, length]; shared by every chart)."""

    context: torch.Tensor
    unconditional: torch.Tensor | None
    audio: list[torch.Tensor]


class DdimSampler:
    """Runs the reverse process for a batch of charts of one song."""

    def __init__(self, unet: UNet, alphas_cumprod: torch.Tensor) -> None:
        """`alphas_cumprod` is the checkpoint's float32 schedule buffer."""
        self.unet = unet
        self.alphas_cumprod = alphas_cumprod.to(torch.float32)

    def eps(
        self,
        x: torch.Tensor,
        timestep: int,
        conditioning: Conditioning,
        guidance: float,
        plan: UNetPlan | None,
    ) -> torch.Tensor:
        """The guided noise prediction for x [count, channels, L] at `timestep`."""
        count = x.shape[0]
        guided = conditioning.unconditional is not None and guidance != 1.0
        if guided:
            batch_x = torch.cat([x, x])
            context = torch.cat([conditioning.unconditional, conditioning.context])
        else:
            batch_x, context = x, conditioning.context
        # One timestep row for the whole batch: its embedding broadcasts, so a chart's numbers do not
        # depend on the batch size (a matrix-vector product is not bit-equal to a matrix product).
        timesteps = torch.full((1,), timestep, dtype=torch.long, device=x.device)

        def run(rows: torch.Tensor, contexts: torch.Tensor) -> torch.Tensor:
            audio = [level.expand(rows.shape[0], -1, -1) for level in conditioning.audio]
            return self.unet(rows, timesteps, contexts, audio, plan)

        out = at_least_two_rows(run, batch_x, context)
        if not guided:
            return out
        uncond, cond = out[:count], out[count:]
        return uncond + guidance * (cond - uncond)

    def iterate(
        self,
        noise: torch.Tensor,
        conditioning: Conditioning,
        steps: int,
        guidance: float,
        plan: UNetPlan | None = None,
    ) -> Iterator[tuple[int, int, torch.Tensor]]:
        """Run the reverse process from `noise` [count, channels, L], yielding (steps done, total
        steps, latents) after every step; the last latents are the result."""
        timesteps = visited_timesteps(steps, len(self.alphas_cumprod))
        x = noise
        for index, timestep in enumerate(timesteps):
            previous = timesteps[index + 1] if index + 1 < len(timesteps) else 0
            a_t = self.alphas_cumprod[timestep]
            a_prev = self.alphas_cumprod[previous]
            eps = self.eps(x, timestep, conditioning, guidance, plan)
            x0 = (x - torch.sqrt(1.0 - a_t) * eps) / a_t.sqrt()
            x = a_prev.sqrt() * x0 + (1.0 - a_prev).sqrt() * eps
            yield index + 1, len(timesteps), x

    def sample(
        self,
        noise: torch.Tensor,
        conditioning: Conditioning,
        steps: int,
        guidance: float,
        plan: UNetPlan | None = None,
    ) -> torch.Tensor:
        """The final latents [count, channels, L] from `noise`."""
        result = noise
        for _, _, latents in self.iterate(noise, conditioning, steps, guidance, plan):
            result = latents
        return result
