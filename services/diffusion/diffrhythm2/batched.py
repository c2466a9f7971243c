"""DiffRhythm 2's side of continuous batching: every song in flight advances by one DiT pass per step.

A step is one batched forward over all rows of all songs (a song has a conditional row and, with
guidance, an unconditional one). Each song is at its own point: an Euler step of its current block
at its own time, or the re-encode of its last finished block at time 1 (a resumed song re-encodes
its prefix blocks the same way). Time, positions and style are per row anyway, so songs at
different blocks, with different step counts, guidance or lengths share one forward; each row
attends only to its own history in `BatchKVCache`. A joining song's lyric prefix is encoded when it
joins (songs joining together with the same lyric length in one forward).

Per song, the arithmetic is exactly that of `BlockSampler`: the same noise from the same seeded
generator, the same Euler updates, the same re-encodes. A song alone in the batch goes through the
very same operations as `BlockSampler` (bit for bit on CPU); in a batch only the products' rounding
differs (well within 1e-4 in float32).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from services.diffusion.diffrhythm2.dit import DiT
from services.diffusion.diffrhythm2.kv_cache import BatchKVCache
from services.diffusion.diffrhythm2.sampler import (
    CLEAN_TIME,
    GUIDANCE_OFF_BELOW,
    TEXT_TIME,
    block_count,
    close_block,
)
from services.diffusion.engine import GeneratedBlock, GenerationEvent


@dataclass(eq=False)
class SongInBatch:
    """One validated song and where its sampling stands (the batcher's unit of work)."""

    tokens: np.ndarray
    style: np.ndarray
    seed: int
    steps: int
    cfg_strength: float
    max_frames: int
    prefix: list[np.ndarray] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    blocks: int = 0
    index: int = 0
    step: int = 0
    state: torch.Tensor | None = None
    reencoding: bool = False
    song: list[np.ndarray] = field(default_factory=list)
    noise_source: torch.Generator | None = None
    grid: torch.Tensor | None = None
    deltas: torch.Tensor | None = None
    style_rows: torch.Tensor | None = None

    @property
    def guided(self) -> bool:
        """Whether the song has an unconditional row."""
        return self.cfg_strength >= GUIDANCE_OFF_BELOW


class BatchedBlockSampler:
    """The `BatchModel` of DiffRhythm 2: block flow matching for a changing batch of songs."""

    def __init__(self, model: DiT) -> None:
        """`model` is loaded, in eval mode, on its device and dtype."""
        self.model = model
        self.config = model.config
        weight = model.proj_out.weight
        self.device, self.dtype = weight.device, weight.dtype
        self.cache = BatchKVCache(
            self.config.depth, self.config.heads, self.config.head_dim, self.device, self.dtype
        )
        self._owners: list[tuple[SongInBatch, int]] = []

    @torch.inference_mode()
    def join(self, songs: Sequence[SongInBatch]) -> None:
        """Give each song its rows, encode its lyric prefix into them and start its first block."""
        if not songs:
            return
        size = self.config.block_size
        self.cache.reserve(
            self.cache.rows + sum(2 if song.guided else 1 for song in songs),
            max(len(song.tokens) + block_count(song.max_frames, size) * size for song in songs),
        )
        for length in sorted({len(song.tokens) for song in songs}):
            group = [song for song in songs if len(song.tokens) == length]
            for song in group:
                song.blocks = block_count(song.max_frames, size)
                rows = self.cache.add_rows(2 if song.guided else 1, length + song.blocks * size)
                song.rows = list(rows)
                self._owners.extend((song, role) for role in range(len(rows)))
                song.style_rows = self._style_rows(song)
                song.noise_source = torch.Generator().manual_seed(song.seed)
                song.grid = torch.linspace(0, 1, song.steps, dtype=torch.float32)
                song.deltas = (song.grid[1:] - song.grid[:-1]).to(self.device)
                song.song = [np.asarray(block, dtype=np.float32) for block in song.prefix]
            self._encode_text(group)
            for song in group:
                self._start_block(song, 0)

    @torch.inference_mode()
    def leave(self, song: SongInBatch) -> None:
        """Free the song's rows (the last rows move into them)."""
        for row in sorted(song.rows, reverse=True):
            moved = self.cache.remove_row(row)
            if moved is not None:
                owner, role = self._owners[moved]
                owner.rows[role] = row
                self._owners[row] = self._owners[moved]
            self._owners.pop()
        song.rows = []

    @torch.inference_mode()
    def step(self, songs: Sequence[SongInBatch]) -> list[list[GenerationEvent]]:
        """One forward over every row: an Euler step or a re-encode per song; returns each song's
        finished block, if this step finished one."""
        size = self.config.block_size
        order = {id(song): position for position, song in enumerate(songs)}
        owners = [(order[id(song)], song, role) for song, role in self._owners]
        inputs = torch.cat([song.state for song in songs]).to(self.dtype)
        embedded = self.model.latent_embed(inputs)
        rows = torch.tensor([position for position, _, _ in owners], device=self.device)
        time = torch.tensor([self._time(song) for _, song, _ in owners], dtype=torch.float32)
        positions = torch.stack(
            [torch.arange(song.index * size, (song.index + 1) * size) for _, song, _ in owners]
        )
        styles = torch.stack([song.style_rows[role] for _, song, role in owners])
        mask = self.cache.begin_pass(0, self.cache.rows, size)
        pred = self.model(
            embedded.index_select(0, rows),
            time.to(self.device)[:, None].expand(-1, size),
            positions.to(self.device),
            styles,
            self.cache,
            mask,
        ).float()
        return [self._advance(song, pred) for song in songs]

    def _time(self, song: SongInBatch) -> float:
        return CLEAN_TIME if song.reencoding else float(song.grid[song.step])

    def _advance(self, song: SongInBatch, pred: torch.Tensor) -> list[GenerationEvent]:
        """Apply this step's result to the song; return the block it finished, if any."""
        if song.reencoding:
            self.cache.commit(song.rows, self.config.block_size)
            self._start_block(song, song.index + 1)
            return []
        cond = song.rows[0]
        velocity = pred[cond : cond + 1]
        if song.guided:
            uncond = song.rows[1]
            velocity = velocity + (velocity - pred[uncond : uncond + 1]) * song.cfg_strength
        song.state = song.state + song.deltas[song.step] * velocity
        song.step += 1
        if song.step < song.steps - 1:
            return []
        song.song.append(song.state[0].cpu().numpy())
        latents, final = close_block(song.song, song.index, song.blocks, song.max_frames)
        frames_done = song.index * self.config.block_size + len(latents)
        song.reencoding = not final
        return [GeneratedBlock(song.index, latents, final, song.blocks, frames_done)]

    def _start_block(self, song: SongInBatch, index: int) -> None:
        """Draw block `index`'s noise; a prefix block is re-encoded instead of solved."""
        size, channels = self.config.block_size, self.config.mel_dim
        noise = torch.randn((1, size, channels), generator=song.noise_source, dtype=torch.float32)
        song.index, song.step = index, 0
        if index < len(song.prefix):
            song.state = torch.as_tensor(song.song[index]).to(self.device)[None]
            song.reencoding = True
        else:
            song.state = noise.to(self.device)
            song.reencoding = False

    def _style_rows(self, song: SongInBatch) -> torch.Tensor:
        """The song's style per row: the prompt's, then zeros for the unconditional row."""
        style = torch.as_tensor(song.style, dtype=torch.float32).to(self.device, self.dtype)[None]
        return torch.cat((style, torch.zeros_like(style))) if song.guided else style

    def _encode_text(self, group: list[SongInBatch]) -> None:
        """Encode the lyric prefixes of songs with equal lyric length (fresh, adjacent rows) at time
        -1, positions 0..L-1, as their first history."""
        ids = torch.cat(
            [
                torch.as_tensor(song.tokens, dtype=torch.long)[None].expand(len(song.rows), -1).clone()
                for song in group
            ]
        )
        for offset, role in self._text_roles(group):
            if role == 1:
                ids[offset] = 0
        ids = ids.to(self.device)
        styles = torch.cat([song.style_rows for song in group])
        rows, length = ids.shape
        first = group[0].rows[0]
        time = torch.full((rows, length), TEXT_TIME, device=self.device)
        positions = torch.arange(length, device=self.device)[None].expand(rows, -1)
        self.cache.begin_pass(first, first + rows, length)
        self.model(self.model.text_embed(ids), time, positions, styles, self.cache)
        self.cache.commit([row for song in group for row in song.rows], length)

    @staticmethod
    def _text_roles(group: list[SongInBatch]) -> list[tuple[int, int]]:
        """(row offset within the group, role) for each row of the group, in row order."""
        pairs, offset = [], 0
        for song in group:
            for role in range(len(song.rows)):
                pairs.append((offset, role))
                offset += 1
        return pairs
