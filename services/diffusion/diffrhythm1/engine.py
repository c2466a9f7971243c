"""DiffRhythm v1's generation engine: validate a song request, sample the whole song, stream it.

The song is sampled as a whole (the CFM sampler integrates every frame at once), so the stream is
one progress event per Euler update and then the latents in blocks of at most 1 MiB
([4096, 64] float32). With `candidates` N the N songs are sampled in one batch and streamed one
after the other, each block carrying its `candidate`; blocks are numbered over the whole stream
(each candidate has the same number of blocks) and only the last one is `final`. A request whose
`prefix` holds the first blocks of an earlier run samples the same songs again (the seeds fix them)
and streams only the blocks after them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.diffusion.diffrhythm1.checkpoint import WEIGHTS_FILE, load_dit
from services.diffusion.diffrhythm1.dit import COND_DIM, CONFIG_FILE, DiT
from services.diffusion.diffrhythm1.length import (
    BASE_SECONDS,
    FRAME_RATE,
    FULL_SECONDS,
    duration_input,
    frame_of,
)
from services.diffusion.diffrhythm1.options import MAX_CANDIDATES, OPEN_END, DiffRhythm1Options
from services.diffusion.diffrhythm1.sampler import CfmSampler, EditPlan, SampledSongs, SongInputs
from services.diffusion.dtypes import resolve_dtype
from services.diffusion.engine import (
    GeneratedBlock,
    GenerationEvent,
    GenerationRequest,
    GenerationSettings,
)
from services.runtime.cancellation import CancellationToken
from services.runtime.errors import FailedPreconditionError, FieldViolation, InvalidArgumentError
from services.runtime.model_info import (
    LYRICS,
    REFERENCE_AUDIO,
    STYLE_AUDIO,
    STYLE_TEXT,
    ModelInfo,
    model_name,
    weights_revision,
)

FAMILY = "diffrhythm1"
NEGATIVE_STYLE_FILE = "negative_style.npy"
MODEL_FILES = (WEIGHTS_FILE, CONFIG_FILE, NEGATIVE_STYLE_FILE)
DEFAULT_STEPS = 32
DEFAULT_CFG_STRENGTH = 4.0
STEPS_RANGE = (2, 200)
CFG_RANGE = (0.0, 20.0)
BLOCK_FRAMES = 4096  # [4096, 64] float32 is 1 MiB
ENCODING_CHANNELS = 128  # the VAE encoder's mean | scale
OPTIONS_FIELD = "diffrhythm1"

Report = Callable[[str, str], None]


@dataclass(frozen=True)
class SongPlan:
    """A validated request: the song's inputs, the candidates' seeds, the sampler settings, the
    edit (None for a new song) and the blocks to skip (the request's prefix)."""

    song: SongInputs
    seeds: list[int]
    steps: int
    cfg_strength: float
    edit: EditPlan | None
    skip_blocks: int


def read_negative_style(path: Path) -> np.ndarray:
    """The negative style vector ([512] or [1, 512] float .npy) rounded to float16, as the reference
    uses it; FailedPreconditionError when the file holds something else."""
    vector = np.load(path, allow_pickle=False)
    if vector.size != COND_DIM or not np.issubdtype(vector.dtype, np.floating):
        raise FailedPreconditionError(
            f"{path} must hold {COND_DIM} floats, not {vector.dtype} {list(vector.shape)}"
        )
    return vector.reshape(COND_DIM).astype(np.float16).astype(np.float32)


def _describe(array: np.ndarray) -> str:
    return f"{array.dtype} {list(array.shape)}"


class DiffRhythm1Engine:
    """A loaded DiffRhythm v1 DiT (base or full) with the negative style and request validation."""

    def __init__(
        self, model: DiT, negative_style: np.ndarray, info: ModelInfo | None = None, max_frames_cap: int = 0
    ) -> None:
        """Wrap a loaded model; `negative_style` [512] is already fp16-rounded; `max_frames_cap` bounds
        the songs a request may ask for (0: the model's own limit)."""
        self.model = model
        self.config = model.config
        self.max_frames_cap = max_frames_cap
        self.info = info or ModelInfo(name=FAMILY, family=FAMILY, revision="", families=(FAMILY,))
        self.sampler = CfmSampler(model, negative_style)

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        device: str = "cpu",
        dtype: str = "float32",
        name: str = "",
        max_frames_cap: int = 0,
    ) -> DiffRhythm1Engine:
        """Load `cfm_model.pt`, `config.json` and `negative_style.npy` from `model_dir`; `name` is the
        name to serve the model under (default: the manifest's, else the folder's); `max_frames_cap`
        bounds the songs requests may ask for (0: the model's own limit).

        FailedPreconditionError naming the missing file when the model is not installed.
        """
        path = Path(model_dir)
        missing = [name for name in MODEL_FILES if not (path / name).is_file()]
        if missing:
            raise FailedPreconditionError(
                f"no DiffRhythm v1 model in {model_dir}: missing {', '.join(missing)} "
                "(run `songsmith models pull diffrhythm1` or `diffrhythm1-full`)"
            )
        info = ModelInfo(
            name=model_name(path, name),
            family=FAMILY,
            revision=weights_revision([path / WEIGHTS_FILE, path / NEGATIVE_STYLE_FILE]),
            families=(FAMILY,),
            frame_rate=FRAME_RATE,
            inputs=(LYRICS, STYLE_TEXT, STYLE_AUDIO, REFERENCE_AUDIO),
        )
        model = load_dit(path, device, resolve_dtype(device, dtype))
        return cls(model, read_negative_style(path / NEGATIVE_STYLE_FILE), info, max_frames_cap)

    @classmethod
    def from_settings(cls, model_dir: Path, settings: GenerationSettings) -> DiffRhythm1Engine:
        """`load` with the stage's settings (the family registry's entry point)."""
        return cls.load(model_dir, settings.device, settings.dtype, settings.name, settings.max_frames_cap)

    @property
    def seconds_range(self) -> tuple[int, int]:
        """The song lengths this model makes: (95, 95) for the base model, (96, 285) for the full one."""
        return FULL_SECONDS if self.config.full_model else (BASE_SECONDS, BASE_SECONDS)

    def frames_for(self, seconds: int) -> int:
        """Frames of a song of `seconds` made by this model."""
        return frame_of(seconds) if self.config.full_model else self.config.max_frames

    def generate(
        self, request: GenerationRequest, token: CancellationToken | None = None
    ) -> Iterator[GenerationEvent]:
        """The stage interface: validate `request` now, then return the iterator of progress events
        and blocks (see the module docstring). INVALID_ARGUMENT names the request's field."""
        plan = self.plan(request)
        return self._stream(plan, token)

    def warm_up(self) -> None:
        """Sample a short stretch with two grid points so kernels are chosen before the first song."""
        song = SongInputs(np.zeros(64, np.int64), np.zeros(COND_DIM, np.float32), 0.0, 1.0)
        for _ in self.sampler.sample(song, [0], 2, DEFAULT_CFG_STRENGTH):
            pass

    def _stream(self, plan: SongPlan, token: CancellationToken | None) -> Iterator[GenerationEvent]:
        for event in self.sampler.sample(
            plan.song, plan.seeds, plan.steps, plan.cfg_strength, plan.edit, token
        ):
            if not isinstance(event, SampledSongs):
                yield event
                continue
            yield from self._blocks(event.latents, plan.skip_blocks)

    @staticmethod
    def _blocks(songs: list[np.ndarray], skip: int) -> Iterator[GeneratedBlock]:
        """The songs' latents (candidate 0 first, all of one length) as one stream of blocks of at
        most BLOCK_FRAMES frames, from block `skip` on."""
        frames = len(songs[0])
        per_song = math.ceil(frames / BLOCK_FRAMES)
        count = per_song * len(songs)
        for index in range(skip, count):
            candidate, part = divmod(index, per_song)
            end = min(frames, (part + 1) * BLOCK_FRAMES)
            piece = np.ascontiguousarray(songs[candidate][part * BLOCK_FRAMES : end])
            yield GeneratedBlock(index, piece, index == count - 1, count, candidate * frames + end, candidate)

    def plan(self, request: GenerationRequest) -> SongPlan:
        """Check every input of `request` against this model; INVALID_ARGUMENT naming each bad field."""
        violations: list[FieldViolation] = []

        def bad(field: str, description: str) -> None:
            violations.append(FieldViolation(field, description))

        options = request.options if request.options is not None else DiffRhythm1Options()
        frames = self._frames(request, bad)
        tokens = self._tokens(request.tokens, frames, bad)
        style = self._style(request.style, bad)
        steps = request.steps or DEFAULT_STEPS
        if not STEPS_RANGE[0] <= steps <= STEPS_RANGE[1]:
            bad("steps", f"must be in {STEPS_RANGE[0]}..{STEPS_RANGE[1]}, got {steps}")
        cfg = DEFAULT_CFG_STRENGTH if request.cfg_strength is None else float(request.cfg_strength)
        if not (math.isfinite(cfg) and CFG_RANGE[0] <= cfg <= CFG_RANGE[1]):
            bad("cfg_strength", f"must be in {CFG_RANGE[0]:g}..{CFG_RANGE[1]:g}, got {cfg}")
        candidates = options.candidates
        if not 1 <= candidates <= MAX_CANDIDATES:
            bad(f"{OPTIONS_FIELD}.candidates", f"must be in 1..{MAX_CANDIDATES}, got {candidates}")
            candidates = 1
        seed = request.seed
        if not isinstance(seed, (int, np.integer)) or not 0 <= seed <= 2**64 - candidates:
            bad("seed", f"must be an integer in 0..2^64-{candidates} (candidate i uses seed + i)")
        edit = self._edit(request.reference, options, frames, bad) if frames else None
        skip = len(request.prefix)
        blocks = math.ceil(frames / BLOCK_FRAMES) * candidates
        if frames and skip >= blocks:
            bad("prefix", f"holds {skip} blocks; this stream has {blocks}, one must be left")
        if violations:
            raise InvalidArgumentError(violations=violations)
        song = SongInputs(
            tokens,
            style,
            0.0,
            duration_input(frames, self.config.max_frames) if self.config.full_model else 1.0,
        )
        return SongPlan(song, [int(seed) + i for i in range(candidates)], steps, cfg, edit, skip)

    def _frames(self, request: GenerationRequest, bad: Report) -> int:
        """The song's frame count (see `_requested_frames`), within the stage's cap."""
        frames = self._requested_frames(request, bad)
        if self.max_frames_cap and frames > self.max_frames_cap:
            bad("seconds", f"{frames} frames is more than this stage's cap of {self.max_frames_cap}")
            return 0
        return frames

    def _requested_frames(self, request: GenerationRequest, bad: Report) -> int:
        """The song's frame count: from `seconds`; without it, from the tokens (one per frame), or
        the model's longest song when there are none either. 0 after reporting a bad length."""
        low, high = self.seconds_range
        seconds = request.seconds
        if seconds:
            if seconds == int(seconds) and low <= seconds <= high:
                return self.frames_for(int(seconds))
            bad("seconds", f"this model makes songs of {low}..{high} s, got {seconds:g}")
            return 0
        if request.tokens is None:
            return self.frames_for(high)
        given = np.asarray(request.tokens).shape[0] if np.asarray(request.tokens).ndim == 1 else 0
        if given in {self.frames_for(value) for value in range(low, high + 1)}:
            return given
        bad("seconds", f"not given, and {given} tokens are no song length of this model ({low}..{high} s)")
        return 0

    def _tokens(self, tokens: np.ndarray | None, frames: int, bad: Report) -> np.ndarray:
        if tokens is None:
            return np.zeros(frames, np.int64)
        array = np.asarray(tokens)
        top = self.config.text_num_embeds
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            bad("token_ids", f"must be a 1-D integer tensor, got {_describe(array)}")
        elif frames and array.shape[0] != frames:
            bad("token_ids", f"must hold one id per frame ({frames} for this length), got {array.shape[0]}")
        elif array.size and (array.min() < 0 or array.max() > top):
            where = int(np.flatnonzero((array < 0) | (array > top))[0])
            bad("token_ids", f"ids must be in 0..{top}; frame {where} has {int(array[where])}")
        return array.astype(np.int64)

    def _style(self, style: np.ndarray | None, bad: Report) -> np.ndarray:
        array = np.asarray(style if style is not None else np.zeros(0, np.float32))
        if array.size != COND_DIM or not np.issubdtype(array.dtype, np.floating):
            bad("style", f"must be a float [{COND_DIM}] vector, got {_describe(array)}")
            return np.zeros(COND_DIM, np.float32)
        if not np.isfinite(array).all():
            bad("style", "contains NaN or infinite values")
        # The reference hands the style to the model as float16.
        return array.reshape(COND_DIM).astype(np.float16).astype(np.float32)

    def _edit(
        self, reference: np.ndarray | None, options: DiffRhythm1Options, frames: int, bad: Report
    ) -> EditPlan | None:
        spans_field = f"{OPTIONS_FIELD}.edit_spans"
        if reference is None:
            if options.edit_spans:
                bad(spans_field, "editing needs the reference song (`reference`)")
            return None
        encoding = np.asarray(reference)
        if not options.edit_spans:
            bad("reference", f"a reference song is only read with {spans_field} (the spans to regenerate)")
            return None
        if (
            encoding.ndim != 2
            or encoding.shape[1] != ENCODING_CHANNELS
            or not np.issubdtype(encoding.dtype, np.floating)
        ):
            bad(
                "reference",
                f"must be the VAE encoding [frames, {ENCODING_CHANNELS}] float32, got {_describe(encoding)}",
            )
            return None
        if encoding.shape[0] < frames:
            bad("reference", f"holds {encoding.shape[0]} frames; the song needs at least {frames}")
            return None
        if not np.isfinite(encoding).all():
            bad("reference", "contains NaN or infinite values")
            return None
        regenerate = np.zeros(frames, bool)
        for index, span in enumerate(options.edit_spans):
            ends = (span.start_seconds, span.end_seconds)
            if any(not math.isfinite(value) or (value < 0 and value != OPEN_END) for value in ends):
                bad(f"{spans_field}[{index}]", f"times must be seconds >= 0 or -1 (open end), got {ends}")
                continue
            start = 0 if span.start_seconds == OPEN_END else frame_of(span.start_seconds)
            end = self.config.max_frames if span.end_seconds == OPEN_END else frame_of(span.end_seconds)
            if start >= end:
                bad(
                    f"{spans_field}[{index}]",
                    f"regenerates nothing: it starts at or after its end, got {ends}",
                )
                continue
            regenerate[start:end] = True
        return EditPlan(encoding.astype(np.float32), regenerate)
