"""DiffRhythm 2's generation engine: validate a song request, then stream its latent blocks.

`DiffusionEngine.sample` is the family's own typed call, one song sampled on its own in the
caller's thread (the CLI and the benchmarks use it). `generate` is the stage's engine interface:
songs called concurrently (one gRPC thread each) are sampled together by the engine's continuous
batcher (`services.diffusion.batching` with `BatchedBlockSampler`), each song's numbers equal to
`sample`'s. Both check every input eagerly (raising InvalidArgumentError named after the request's
proto fields) before they return the iterator, so bad input fails at the call, not at the first block.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.diffusion.batching import BatchLimits, ContinuousBatcher
from services.diffusion.diffrhythm2.batched import BatchedBlockSampler, SongInBatch
from services.diffusion.diffrhythm2.checkpoint import load_dit, missing_model_files
from services.diffusion.diffrhythm2.dit import COND_DIM, DiT
from services.diffusion.diffrhythm2.sampler import BlockSampler, SampledBlock, block_count, end_of_song
from services.diffusion.dtypes import resolve_dtype
from services.diffusion.engine import GeneratedBlock, GenerationEvent, GenerationRequest, GenerationSettings
from services.runtime.cancellation import CancellationToken
from services.runtime.errors import (
    FailedPreconditionError,
    FieldViolation,
    InternalError,
    InvalidArgumentError,
)
from services.runtime.model_info import (
    LYRICS,
    STYLE_AUDIO,
    STYLE_TEXT,
    ModelInfo,
    model_name,
    weights_revision,
)

FAMILY = "diffrhythm2"
FRAMES_PER_SECOND = 5
DEFAULT_STEPS = 16
DEFAULT_CFG_STRENGTH = 2.0
STEPS_RANGE = (2, 200)
CFG_RANGE = (0.0, 20.0)
DEFAULT_MAX_FRAMES_CAP = 3000
DEFAULT_SONG_FRAMES = 1050  # 210 s, the reference's default length cap
MAX_TOKENS = 8192
# Input value bounds. A MuQ-MuLan style vector has unit length, so every value lies in [-1, 1]; the
# model's latents stay within a few units. Far larger values only overflow the network into NaN.
STYLE_LIMIT = 100.0
LATENT_LIMIT = 1000.0
DEFAULT_LIMITS = BatchLimits()


@dataclass(frozen=True)
class LatentBlockResult:
    """One streamed block: `latents` [frames, 64] float32; `max_blocks` bounds the song's block count."""

    index: int
    latents: np.ndarray
    final: bool
    max_blocks: int

    @property
    def seconds_generated(self) -> float:
        """Seconds of audio up to the end of this block."""
        return (self.index * 10 + self.latents.shape[0]) / FRAMES_PER_SECOND


def _check_finite(latents: np.ndarray, index: int) -> None:
    """INTERNAL when a sampled block holds NaN or infinite latents: the song stops rather than return them."""
    if not np.isfinite(latents).all():
        raise InternalError(
            f"the model produced NaN or infinite latents in block {index}; "
            "the song stops here instead of returning them"
        )


def _finite_blocks(events: Iterator[GenerationEvent]) -> Iterator[GenerationEvent]:
    """`events`, failing the song at the first block with non-finite latents."""
    for event in events:
        if isinstance(event, GeneratedBlock):
            _check_finite(event.frames, event.index)
        yield event


def _describe(array: np.ndarray) -> str:
    return f"{array.dtype} {list(array.shape)}"


class DiffusionEngine:
    """A loaded DiT, the block sampler and the batcher of concurrent songs, with request validation."""

    def __init__(
        self,
        model: DiT,
        max_frames_cap: int = DEFAULT_MAX_FRAMES_CAP,
        info: ModelInfo | None = None,
        limits: BatchLimits = DEFAULT_LIMITS,
    ) -> None:
        """Wrap a loaded model; `max_frames_cap` is the longest song a request may ask for, `limits`
        bound the songs sampled together and waiting (the batcher's thread starts with the first
        `generate`)."""
        self.model = model
        self.config = model.config
        self.max_frames_cap = max_frames_cap
        self.info = info or ModelInfo(
            name=FAMILY, family=FAMILY, revision="", families=(FAMILY,), frame_rate=float(FRAMES_PER_SECOND)
        )
        self._sampler = BlockSampler(model)
        self.batcher = ContinuousBatcher(BatchedBlockSampler(model), limits, name="diffusion")

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        device: str = "cpu",
        dtype: str = "float32",
        max_frames_cap: int = DEFAULT_MAX_FRAMES_CAP,
        name: str = "",
        limits: BatchLimits = DEFAULT_LIMITS,
    ) -> DiffusionEngine:
        """Load `model.safetensors` and `config.json`/`model.json` from `model_dir`; `name` is the
        name to serve the model under (default: the manifest's, else the folder's); `limits` bound
        the batch of concurrent songs.

        Raises FailedPreconditionError naming the missing file when the model is not installed.
        """
        path = Path(model_dir)
        missing = missing_model_files(path)
        if missing:
            raise FailedPreconditionError(f"no diffusion model in {model_dir}: missing {', '.join(missing)}")
        info = ModelInfo(
            name=model_name(path, name),
            family=FAMILY,
            revision=weights_revision([path / "model.safetensors"]),
            families=(FAMILY,),
            frame_rate=float(FRAMES_PER_SECOND),
            inputs=(LYRICS, STYLE_TEXT, STYLE_AUDIO),
        )
        return cls(load_dit(path, device, resolve_dtype(device, dtype)), max_frames_cap, info, limits)

    @classmethod
    def from_settings(cls, model_dir: Path, settings: GenerationSettings) -> DiffusionEngine:
        """`load` with the stage's settings (the family registry's entry point)."""
        cap = settings.max_frames_cap or DEFAULT_MAX_FRAMES_CAP
        limits = BatchLimits(settings.max_batch, settings.max_queue, settings.retry_after_s)
        return cls.load(model_dir, settings.device, settings.dtype, cap, settings.name, limits)

    @property
    def block_size(self) -> int:
        """Latent frames per block (10 = 2 s)."""
        return self.config.block_size

    def generate(
        self, request: GenerationRequest, token: CancellationToken | None = None
    ) -> Iterator[GenerationEvent]:
        """The stage interface: the song's blocks after `request.prefix`, the same as `sample`
        gives, sampled in a batch with the other songs in flight.

        Raises InvalidArgumentError for bad input and ResourceExhaustedError when the batch and its
        queue are full, both at the call. `token` is checked before every batched step.
        """
        cfg = DEFAULT_CFG_STRENGTH if request.cfg_strength is None else request.cfg_strength
        steps = request.steps or DEFAULT_STEPS
        tokens, style, prefix = self._validate(
            np.zeros(0, np.int64) if request.tokens is None else request.tokens,
            np.zeros(0, np.float32) if request.style is None else request.style,
            request.seed,
            steps,
            cfg,
            request.max_frames or DEFAULT_SONG_FRAMES,
            request.prefix,
        )
        max_frames = request.max_frames or DEFAULT_SONG_FRAMES
        song = SongInBatch(tokens, style, request.seed, steps, cfg, max_frames, prefix)
        return _finite_blocks(self.batcher.submit(song, token))

    def warm_up(self) -> None:
        """Sample one short block through the batcher so the first real request does not pay for
        kernel selection."""
        silence = np.zeros(COND_DIM, np.float32)
        warm = GenerationRequest(tokens=np.zeros(1, np.int64), style=silence, steps=2, max_frames=1)
        for _ in self.generate(warm):
            pass

    def close(self) -> None:
        """Stop the batcher's thread (songs still in flight end with an error)."""
        self.batcher.close()

    def sample(
        self,
        tokens: np.ndarray,
        style: np.ndarray,
        *,
        seed: int,
        steps: int = DEFAULT_STEPS,
        cfg_strength: float = DEFAULT_CFG_STRENGTH,
        max_frames: int,
        prefix: Sequence[np.ndarray] = (),
        token: CancellationToken | None = None,
    ) -> Iterator[LatentBlockResult]:
        """Validate the request, then return an iterator over the blocks after `prefix`.

        tokens: int [L] lyric ids; style: float32 [512]. The same arguments give the same blocks on
        any device; with `prefix` (blocks 0..k-1 of an earlier run of this request) the iterator
        yields blocks k.. of that same song. `token` is checked at every ODE step.
        """
        tokens, style, prefix = self._validate(tokens, style, seed, steps, cfg_strength, max_frames, prefix)
        max_blocks = block_count(max_frames, self.block_size)
        blocks = self._sampler.sample(
            tokens,
            style,
            seed=seed,
            steps=steps,
            cfg_strength=cfg_strength,
            max_frames=max_frames,
            prefix=prefix,
            token=token,
        )
        return (self._result(block, max_blocks) for block in blocks)

    @staticmethod
    def _result(block: SampledBlock, max_blocks: int) -> LatentBlockResult:
        """The block as a result; a block with NaN or infinite latents fails the song instead (INTERNAL),
        so non-finite output never reaches a caller as success."""
        _check_finite(block.latents, block.index)
        return LatentBlockResult(block.index, block.latents, block.final, max_blocks)

    def _validate(
        self,
        tokens: np.ndarray,
        style: np.ndarray,
        seed: int,
        steps: int,
        cfg_strength: float,
        max_frames: int,
        prefix: Sequence[np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        violations: list[FieldViolation] = []

        def bad(field: str, description: str) -> None:
            violations.append(FieldViolation(field, description))

        tokens = np.asarray(tokens)
        top = self.config.text_num_embeds
        if tokens.ndim != 1 or tokens.shape[0] == 0 or not np.issubdtype(tokens.dtype, np.integer):
            bad("token_ids", f"must be a non-empty 1-D integer tensor, got {_describe(tokens)}")
        elif tokens.shape[0] > MAX_TOKENS:
            bad("token_ids", f"at most {MAX_TOKENS} tokens, got {tokens.shape[0]}")
        elif tokens.min() < 0 or tokens.max() > top:
            where = int(np.flatnonzero((tokens < 0) | (tokens > top))[0])
            bad("token_ids", f"ids must be in 0..{top}; token {where} is {int(tokens[where])}")
        style = np.asarray(style)
        if style.shape != (COND_DIM,) or not np.issubdtype(style.dtype, np.floating):
            bad("style", f"must be a float [{COND_DIM}] vector, got {_describe(style)}")
        elif not np.isfinite(style).all():
            bad("style", "contains NaN or infinite values")
        elif np.abs(style).max() > STYLE_LIMIT:
            bad("style", f"values must lie within ±{STYLE_LIMIT:g}, got {float(np.abs(style).max()):g}")
        if not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**64:
            bad("seed", "must be an integer in 0..2^64-1")
        if not STEPS_RANGE[0] <= steps <= STEPS_RANGE[1]:
            bad("steps", f"must be in {STEPS_RANGE[0]}..{STEPS_RANGE[1]}, got {steps}")
        if not (math.isfinite(cfg_strength) and CFG_RANGE[0] <= cfg_strength <= CFG_RANGE[1]):
            bad("cfg_strength", f"must be in {CFG_RANGE[0]:g}..{CFG_RANGE[1]:g}, got {cfg_strength}")
        if not 1 <= max_frames <= self.max_frames_cap:
            bad("max_frames", f"must be in 1..{self.max_frames_cap}, got {max_frames}")
        else:
            self._validate_prefix(prefix, block_count(max_frames, self.block_size), bad)
        if violations:
            raise InvalidArgumentError(violations=violations)
        return tokens.astype(np.int64), style.astype(np.float32), [np.array(b, np.float32) for b in prefix]

    def _validate_prefix(
        self, prefix: Sequence[np.ndarray], max_blocks: int, bad: Callable[[str, str], None]
    ) -> None:
        if len(prefix) >= max_blocks:
            bad(
                "prefix",
                f"holds {len(prefix)} blocks; a song of max_frames has at most {max_blocks}, "
                "and at least one must be left to sample",
            )
            return
        shape = (self.block_size, self.config.mel_dim)
        for index, block in enumerate(prefix):
            block = np.asarray(block)
            if block.shape != shape or not np.issubdtype(block.dtype, np.floating):
                bad(f"prefix[{index}].frames", f"must be float {list(shape)}, got {_describe(block)}")
            elif not np.isfinite(block).all():
                bad(f"prefix[{index}].frames", "contains NaN or infinite values")
            elif np.abs(block).max() > LATENT_LIMIT:
                bad(f"prefix[{index}].frames", f"values must lie within ±{LATENT_LIMIT:g}")
            elif end_of_song(block) is not None:
                bad(f"prefix[{index}].frames", "ends the song (its last frame is the end marker)")
