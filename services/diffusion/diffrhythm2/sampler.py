"""Block flow matching: sample a song's latents 10 frames at a time over a growing KV cache.

The lyric prefix is encoded once at time -1. Each block starts from seeded noise and is solved by
Euler over `linspace(0, 1, steps)`; the velocity is the guided prediction
`pred + (pred - uncond) * cfg_strength`, where the unconditional row sees null lyric ids and a zero
style. Both rows run as one batched forward, each against its own cache row. A finished block is
re-encoded at time 1 into both rows so later blocks attend to it. The song ends when its last frame
is close to all ones (the model's end marker) or at the block limit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from services.diffusion.diffrhythm2.dit import DiT
from services.diffusion.diffrhythm2.kv_cache import BlockKVCache
from services.runtime.cancellation import CancellationToken

TEXT_TIME = -1.0
CLEAN_TIME = 1.0
GUIDANCE_OFF_BELOW = 1e-5  # below this strength the unconditional pass is skipped, as upstream
END_FRAME_MSE = 0.05


def end_of_song(latents: np.ndarray) -> int | None:
    """Where a song whose last frame is the end marker stops, or None if it goes on.

    latents: [frames, channels]. A frame is an end frame when its mean squared distance to all ones
    is at most 0.05. When the last frame is one, the song is cut before the last frame that is not an
    end frame, scanning back from the end; this reproduces the reference, which also drops that
    frame. Returns the number of frames to keep.
    """

    def is_end(frame: np.ndarray) -> bool:
        return float(np.mean((frame.astype(np.float32) - 1.0) ** 2)) <= END_FRAME_MSE

    frames = latents.shape[0]
    if frames == 0 or not is_end(latents[-1]):
        return None
    position = frames - 1
    while position > 0 and is_end(latents[position]):
        position -= 1
    return position


@dataclass(frozen=True)
class SampledBlock:
    """One finished block: `latents` [frames, 64] float32 (fewer than 10 frames only when final)."""

    index: int
    latents: np.ndarray
    final: bool


def block_count(max_frames: int, block_size: int) -> int:
    """Blocks needed to cover `max_frames` frames."""
    return -(-max_frames // block_size)


def close_block(song: list[np.ndarray], index: int, blocks: int, max_frames: int) -> tuple[np.ndarray, bool]:
    """The frames of the song's newest block (`song[-1]`, block `index` of at most `blocks`) to hand
    out, and whether the song ends with it: at the end marker (cut as `end_of_song` says) or at the
    block limit (cut to `max_frames`)."""
    latents = song[-1]
    size = latents.shape[0]
    end = end_of_song(np.concatenate(song))
    final = end is not None or index == blocks - 1
    if final:
        kept = min(max_frames, (index + 1) * size if end is None else end)
        latents = latents[: max(0, kept - index * size)]
    return latents, final


class BlockSampler:
    """Runs block flow matching with one DiT on one device."""

    def __init__(self, model: DiT) -> None:
        """`model` is loaded, in eval mode, on its device and dtype."""
        self.model = model
        self.config = model.config
        weight = model.proj_out.weight
        self.device, self.dtype = weight.device, weight.dtype

    @torch.inference_mode()
    def sample(
        self,
        tokens: np.ndarray,
        style: np.ndarray,
        *,
        seed: int,
        steps: int,
        cfg_strength: float,
        max_frames: int,
        prefix: Sequence[np.ndarray] = (),
        token: CancellationToken | None = None,
    ) -> Iterator[SampledBlock]:
        """Yield each block after the prefix the moment it is sampled; inputs are already validated.

        `prefix` holds blocks an earlier run of the same request produced; they are re-encoded into
        the cache exactly as that run did and their noise is drawn and discarded, so the blocks that
        follow are the ones an uninterrupted run would give.
        """
        size = self.config.block_size
        blocks = block_count(max_frames, size)
        guided = cfg_strength >= GUIDANCE_OFF_BELOW
        rows = 2 if guided else 1
        ids = torch.as_tensor(tokens, dtype=torch.long, device=self.device)[None].expand(rows, -1).clone()
        styles = torch.as_tensor(style, dtype=torch.float32).to(self.device, self.dtype)[None].repeat(rows, 1)
        if guided:
            ids[1] = 0
            styles[1] = 0
        cache = BlockKVCache(
            self.config.depth,
            rows,
            self.config.heads,
            self.config.head_dim,
            capacity=ids.shape[1] + blocks * size,
            device=self.device,
            dtype=self.dtype,
        )
        self._check(token)
        self._encode_text(ids, styles, cache)
        noise_source = torch.Generator().manual_seed(seed)
        grid = torch.linspace(0, 1, steps, dtype=torch.float32)
        song = [np.asarray(block, dtype=np.float32) for block in prefix]
        for index in range(blocks):
            noise = torch.randn((1, size, self.config.mel_dim), generator=noise_source, dtype=torch.float32)
            positions = torch.arange(index * size, (index + 1) * size, device=self.device)
            positions = positions[None].expand(rows, -1)
            if index < len(prefix):
                clean = torch.as_tensor(song[index]).to(self.device)[None]
            else:
                clean = self._solve_block(
                    noise.to(self.device), grid, positions, styles, cache, cfg_strength, token
                )
                song.append(clean[0].cpu().numpy())
                latents, final = close_block(song, index, blocks, max_frames)
                yield SampledBlock(index, latents, final)
                if final:
                    return
            self._encode_clean(clean, positions, styles, cache)

    @staticmethod
    def _check(token: CancellationToken | None) -> None:
        if token is not None:
            token.check()

    def _encode_text(self, ids: torch.Tensor, styles: torch.Tensor, cache: BlockKVCache) -> None:
        """Encode the lyric prefix at time -1, positions 0..L-1, and keep it as the first context."""
        rows, length = ids.shape
        if length == 0:
            return
        time = torch.full((rows, length), TEXT_TIME, device=self.device)
        positions = torch.arange(length, device=self.device)[None].expand(rows, -1)
        self.model(self.model.text_embed(ids), time, positions, styles, cache)
        cache.commit(length)

    def _encode_clean(
        self, clean: torch.Tensor, positions: torch.Tensor, styles: torch.Tensor, cache: BlockKVCache
    ) -> None:
        """Re-encode a finished block at time 1 into every cache row and keep it as context."""
        rows, size = positions.shape
        embedded = self.model.latent_embed(clean.to(self.dtype)).expand(rows, -1, -1)
        time = torch.full((rows, size), CLEAN_TIME, device=self.device)
        self.model(embedded, time, positions, styles, cache)
        cache.commit(size)

    def _solve_block(
        self,
        noise: torch.Tensor,
        grid: torch.Tensor,
        positions: torch.Tensor,
        styles: torch.Tensor,
        cache: BlockKVCache,
        cfg_strength: float,
        token: CancellationToken | None,
    ) -> torch.Tensor:
        """Euler from noise (t = 0) to data (t = 1) with guided velocities; returns [1, 10, 64] float32."""
        rows, size = positions.shape
        state = noise
        deltas = (grid[1:] - grid[:-1]).to(self.device)
        for step in range(grid.shape[0] - 1):
            self._check(token)
            embedded = self.model.latent_embed(state.to(self.dtype)).expand(rows, -1, -1)
            time = torch.full((rows, size), float(grid[step]), device=self.device)
            pred = self.model(embedded, time, positions, styles, cache).float()
            velocity = pred[:1]
            if rows == 2:
                velocity = velocity + (velocity - pred[1:]) * cfg_strength
            state = state + deltas[step] * velocity
        return state
