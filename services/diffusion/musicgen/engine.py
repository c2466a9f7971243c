"""MusicGen's generation engine: validate a song request, then stream its codes in 1 s blocks.

The request's `style` is the style stage's T5 states [tokens, d_text]; `melody` (melody models) its
one-hot chroma [frames, 12]; `max_frames` the song length in 50 Hz frames (or `seconds`); `options`
a `MusicgenOptions`. Blocks hold int64 codes [frames, codebooks] (frames first, as the stage
interface says; the CLI writes [codebooks, frames]), 50 frames each but the last. Every input is
checked before the iterator is returned, so bad input fails at the call with InvalidArgumentError
naming the request field.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from services.diffusion.dtypes import resolve_dtype
from services.diffusion.engine import GeneratedBlock, GenerationRequest, GenerationSettings
from services.diffusion.musicgen.lm import LmConfig, MusicgenLm, load_lm
from services.diffusion.musicgen.options import OPTIONS_FIELD, MusicgenOptions, parse_options
from services.diffusion.musicgen.sampler import CodeSampler, Geometry, Song
from services.diffusion.musicgen.windows import window_frames
from services.runtime.cancellation import CancellationToken
from services.runtime.errors import FieldViolation, InvalidArgumentError
from services.runtime.hub_checkpoint import weight_files
from services.runtime.model_info import (
    MELODY_AUDIO,
    REFERENCE_AUDIO,
    STYLE_TEXT,
    ModelInfo,
    model_name,
    weights_revision,
)

FAMILY = "musicgen"
DEFAULT_CFG = 3.0
CFG_RANGE = (0.0, 20.0)
DEFAULT_SECONDS = 30.0
DEFAULT_MAX_FRAMES_CAP = 15000
MAX_TEXT_TOKENS = 512
MAX_CHROMA_FRAMES = 4096


def _describe(array: np.ndarray) -> str:
    return f"{array.dtype} {list(array.shape)}"


@dataclass(frozen=True)
class CheckedRequest:
    """A validated request: the song to sample and where it starts."""

    song: Song
    geometry: Geometry
    known_codes: np.ndarray
    max_blocks: int


class MusicgenEngine:
    """A loaded MusicGen LM with request validation and the streaming sampler."""

    def __init__(
        self,
        lm: MusicgenLm,
        max_frames_cap: int = DEFAULT_MAX_FRAMES_CAP,
        info: ModelInfo | None = None,
        window: int = 0,
        stride: int = 0,
    ):
        """Wrap a loaded LM; `max_frames_cap` is the longest song a request may ask for; `window` and
        `stride` the extended-generation geometry in frames (0: AudioCraft's 30 s and 18 s)."""
        self.lm = lm
        self.config: LmConfig = lm.config
        self.max_frames_cap = max_frames_cap
        self.info = info or ModelInfo(name=FAMILY, family=FAMILY, revision="", families=(FAMILY,))
        default_window, default_stride = window_frames(self.config.frame_rate)
        self.window, self.stride = window or default_window, stride or default_stride
        self.block_frames = round(self.config.frame_rate)
        self.sampler = CodeSampler(lm, self.window, self.stride)

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        device: str = "cpu",
        dtype: str = "float32",
        max_frames_cap: int = DEFAULT_MAX_FRAMES_CAP,
        name: str = "",
    ) -> MusicgenEngine:
        """Load the LM of the MusicGen folder `model_dir` (FailedPreconditionError when its weights are
        missing or do not fit its config); `name` is the name to serve it under."""
        path = Path(model_dir)
        lm = load_lm(path, device, resolve_dtype(device, dtype, "LM"))
        config = lm.config
        info = ModelInfo(
            name=model_name(path, name),
            family=FAMILY,
            revision=weights_revision(weight_files(path)),
            families=(FAMILY,),
            sample_rate=config.sample_rate,
            frame_rate=config.frame_rate,
            channels=config.audio_channels,
            inputs=(STYLE_TEXT, MELODY_AUDIO, REFERENCE_AUDIO)
            if config.melody
            else (STYLE_TEXT, REFERENCE_AUDIO),
        )
        return cls(lm, max_frames_cap, info)

    @classmethod
    def from_settings(cls, model_dir: Path, settings: GenerationSettings) -> MusicgenEngine:
        """`load` with the stage's settings (the family registry's entry point)."""
        cap = settings.max_frames_cap or DEFAULT_MAX_FRAMES_CAP
        return cls.load(model_dir, settings.device, settings.dtype, cap, settings.name)

    def generate(
        self, request: GenerationRequest, token: CancellationToken | None = None
    ) -> Iterator[GeneratedBlock]:
        """The song's blocks after `request.prefix`, each as soon as its last frame is final."""
        checked = self.check(request)
        blocks = self.sampler.sample([checked.song], checked.geometry, checked.known_codes[None], token)
        return (self._block(block.start, block.codes[0], block.final, checked.max_blocks) for block in blocks)

    def generate_batch(
        self, requests: Sequence[GenerationRequest], token: CancellationToken | None = None
    ) -> Iterator[list[GeneratedBlock]]:
        """Several songs of the same length (and prompt length, and prefix length) in lockstep, one
        batched forward per step; yields each step's blocks, one per song. Each song's codes are those
        of `generate` alone, up to float rounding of the batched products."""
        checked = [self.check(request) for request in requests]
        geometries = {item.geometry for item in checked}
        if len(geometries) != 1:
            raise InvalidArgumentError(
                "max_frames", "songs batched together need the same length, prompt and prefix"
            )
        songs = [item.song for item in checked]
        known = np.stack([item.known_codes for item in checked])
        for block in self.sampler.sample(songs, checked[0].geometry, known, token):
            yield [
                self._block(block.start, codes, block.final, checked[0].max_blocks) for codes in block.codes
            ]

    def _block(self, start: int, codes: np.ndarray, final: bool, max_blocks: int) -> GeneratedBlock:
        return GeneratedBlock(start // self.block_frames, codes, final, max_blocks, start + len(codes))

    def warm_up(self) -> None:
        """Generate a few frames so the first real request does not pay for kernel selection."""
        states = np.zeros((4, self.config.text_hidden_size), np.float32)
        request = GenerationRequest(style=states, max_frames=2, options=MusicgenOptions(greedy=True))
        for _ in self.generate(request):
            pass

    def total_frames(self, request: GenerationRequest) -> int:
        """The song length a request asks for: max_frames, else seconds x frame rate, else 30 s."""
        if request.max_frames:
            return int(request.max_frames)
        seconds = request.seconds or DEFAULT_SECONDS
        return round(seconds * self.config.frame_rate)

    def check(self, request: GenerationRequest) -> CheckedRequest:
        """Validate a request (InvalidArgumentError naming every bad field) and resolve its defaults."""
        violations: list[FieldViolation] = []

        def bad(field: str, description: str) -> None:
            violations.append(FieldViolation(field, description))

        if request.tokens is not None and np.asarray(request.tokens).size:
            bad("token_ids", "MusicGen models take no lyrics")
        text = self._check_text(request.style, bad)
        chroma = self._check_melody(request.melody, bad)
        if not isinstance(request.seed, (int, np.integer)) or not 0 <= request.seed < 2**64:
            bad("seed", "must be an integer in 0..2^64-1")
        cfg = DEFAULT_CFG if request.cfg_strength is None else float(request.cfg_strength)
        if not (math.isfinite(cfg) and CFG_RANGE[0] <= cfg <= CFG_RANGE[1]):
            bad("cfg_strength", f"must be in {CFG_RANGE[0]:g}..{CFG_RANGE[1]:g}, got {request.cfg_strength}")
        if not (math.isfinite(request.seconds) and request.seconds >= 0):
            bad("seconds", f"must be a length in seconds >= 0, got {request.seconds}")
            total = 0
        else:
            total = self.total_frames(request)
        if not 1 <= total <= self.max_frames_cap:
            bad("max_frames", f"must be in 1..{self.max_frames_cap} frames, got {total}")
        options = request.options
        if options is None:
            options = MusicgenOptions()
        elif not isinstance(options, MusicgenOptions):
            options = parse_options(options)
        for violation in options.violations(self.config.vocab_size):
            violations.append(violation)
        prompt = self._check_prompt(options.prompt_codes, request.reference, total, bad)
        prefix = self._check_prefix(request.prefix, total, prompt, bad)
        if violations:
            raise InvalidArgumentError(violations=violations)
        known = prefix if len(prefix) > len(prompt) else prompt
        song = Song(torch.from_numpy(text), chroma, cfg, options, int(request.seed))
        geometry = Geometry(
            total=total,
            prompt=len(prompt),
            known=len(known),
            emit_from=len(request.prefix) * self.block_frames,
            group=self.block_frames,
        )
        return CheckedRequest(song, geometry, known, math.ceil(total / self.block_frames))

    def _check_text(self, style: np.ndarray | None, bad: Callable[[str, str], None]) -> np.ndarray:
        width = self.config.text_hidden_size
        states = np.zeros((0, width), np.float32) if style is None else np.asarray(style)
        if states.ndim != 2 or states.shape[1] != width or not np.issubdtype(states.dtype, np.floating):
            bad("style", f"must be the T5 states, float [tokens, {width}], got {_describe(states)}")
        elif not 1 <= states.shape[0] <= MAX_TEXT_TOKENS:
            bad("style", f"must hold 1..{MAX_TEXT_TOKENS} token states, got {states.shape[0]}")
        elif not np.isfinite(states).all():
            bad("style", "contains NaN or infinite values")
        else:
            return np.array(states, dtype=np.float32)  # a writable copy: wire tensors are read-only
        return np.zeros((1, width), np.float32)

    def _check_melody(
        self, melody: np.ndarray | None, bad: Callable[[str, str], None]
    ) -> torch.Tensor | None:
        if melody is None or np.asarray(melody).size == 0:
            return None
        chroma = np.asarray(melody)
        if not self.config.melody:
            bad("melody", "this MusicGen model takes no melody (it is not a melody model)")
            return None
        bins = self.config.num_chroma
        if chroma.ndim != 2 or chroma.shape[1] != bins or not np.issubdtype(chroma.dtype, np.floating):
            bad("melody", f"must be a chroma, float [frames, {bins}], got {_describe(chroma)}")
        elif chroma.shape[0] > MAX_CHROMA_FRAMES:
            bad("melody", f"holds {chroma.shape[0]} frames; the limit is {MAX_CHROMA_FRAMES}")
        elif not np.isfinite(chroma).all():
            bad("melody", "contains NaN or infinite values")
        else:
            return torch.from_numpy(np.array(chroma, dtype=np.float32))  # writable, as above
        return None

    def _check_codes(self, codes: np.ndarray, field: str, bad: Callable[[str, str], None]) -> bool:
        """True when `codes` is an integer [frames, codebooks] array of valid codes."""
        codebooks, vocab = self.config.num_codebooks, self.config.vocab_size
        if codes.ndim != 2 or codes.shape[1] != codebooks or not np.issubdtype(codes.dtype, np.integer):
            bad(field, f"must be integer codes [frames, {codebooks}], got {_describe(codes)}")
        elif codes.size and (codes.min() < 0 or codes.max() >= vocab):
            bad(field, f"codes must be in 0..{vocab - 1}")
        else:
            return True
        return False

    def _check_prompt(
        self,
        prompt_codes: np.ndarray | None,
        reference: np.ndarray | None,
        total: int,
        bad: Callable[[str, str], None],
    ) -> np.ndarray:
        """The codes to continue: the options' `prompt_codes` or the generic `reference` (the
        vocoder's encoding of the request's recording), never both."""
        empty = np.zeros((0, self.config.num_codebooks), np.int64)
        if prompt_codes is not None and reference is not None:
            bad("reference", f"give a recording to continue or {OPTIONS_FIELD}.prompt_codes, not both")
            return empty
        if prompt_codes is None and reference is None:
            return empty
        field = f"{OPTIONS_FIELD}.prompt_codes" if reference is None else "reference"
        codes = np.asarray(prompt_codes if reference is None else reference)
        if not self._check_codes(codes, field, bad):
            return empty
        longest = min(total - 1, self.window - 1)
        if not 1 <= len(codes) <= longest:
            bad(
                field,
                f"must hold 1..{longest} frames (less than the song and the {self.window}-frame window)",
            )
            return empty
        return codes.astype(np.int64)

    def _check_prefix(
        self, prefix: Sequence[np.ndarray], total: int, prompt: np.ndarray, bad: Callable[[str, str], None]
    ) -> np.ndarray:
        empty = np.zeros((0, self.config.num_codebooks), np.int64)
        if not prefix:
            return empty
        max_blocks = math.ceil(total / self.block_frames) if total > 0 else 0
        if len(prefix) >= max_blocks:
            bad(
                "prefix",
                f"holds {len(prefix)} blocks; a song of max_frames has at most {max_blocks}, "
                "and at least one must be left to sample",
            )
            return empty
        blocks = []
        for index, block in enumerate(prefix):
            block = np.asarray(block)
            field = f"prefix[{index}]"
            if not self._check_codes(block, field, bad):
                return empty
            if len(block) != self.block_frames:
                bad(field, f"must hold {self.block_frames} frames (only the final block is shorter)")
                return empty
            blocks.append(block.astype(np.int64))
        frames = np.concatenate(blocks)
        overlap = min(len(frames), len(prompt))
        if not np.array_equal(frames[:overlap], prompt[:overlap]):
            bad("prefix", "does not start with the prompt codes of this request")
        return frames
