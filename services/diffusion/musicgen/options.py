"""MusicGen's own request options (the `musicgen` arm of the generation request's `family_options`),
their checks, and the flags that `songsmith latents generate` adds for them.

Defaults follow AudioCraft's (`set_generation_params`): sampling with top-k 250 and temperature 1.0.
Transformers' Hub `generation_config.json` names no top-k (so its default generate samples from all
2048 entries); Songsmith always passes its own knobs. To sample from every entry, ask for
top-k = the codebook size (2048).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.runtime.errors import FieldViolation, InvalidArgumentError

OPTIONS_FIELD = "musicgen"
DEFAULT_TOP_K = 250
DEFAULT_TEMPERATURE = 1.0
MAX_TEMPERATURE = 10.0


@dataclass(frozen=True)
class MusicgenOptions:
    """How codes are chosen, and an optional audio prompt to continue.

    greedy: take the most likely code (nothing is drawn; the seed is unused). Otherwise sample after
    dividing the guided logits by `temperature` (0 < T <= 10), keeping the `top_k` largest
    (1..codebook size), then, when 0 < `top_p` < 1, the smallest set whose probability reaches top_p.
    prompt_codes: int64 [frames, codebooks] codes of a recording to continue (EnCodec's encoding of it,
    from the vocoder stage); the song starts with those frames and goes on from them.
    """

    greedy: bool = False
    top_k: int = DEFAULT_TOP_K
    top_p: float = 0.0
    temperature: float = DEFAULT_TEMPERATURE
    prompt_codes: np.ndarray | None = None

    def violations(self, vocab_size: int) -> list[FieldViolation]:
        """What is out of range, each violation naming the request field."""
        found = []
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, (int, np.integer)):
            found.append(FieldViolation(f"{OPTIONS_FIELD}.top_k", f"must be an integer, got {self.top_k!r}"))
        elif not 1 <= self.top_k <= vocab_size:
            found.append(
                FieldViolation(f"{OPTIONS_FIELD}.top_k", f"must be in 1..{vocab_size}, got {self.top_k}")
            )
        if not (math.isfinite(self.temperature) and 0.0 < self.temperature <= MAX_TEMPERATURE):
            found.append(
                FieldViolation(
                    f"{OPTIONS_FIELD}.temperature",
                    f"must be in (0, {MAX_TEMPERATURE:g}], got {self.temperature}",
                )
            )
        if not (math.isfinite(self.top_p) and 0.0 <= self.top_p <= 1.0):
            found.append(FieldViolation(f"{OPTIONS_FIELD}.top_p", f"must be in 0..1, got {self.top_p}"))
        return found


def _read(message: Any, name: str) -> Any:
    """A field of an options object: None when it is absent, unset (a proto field with presence that
    was not set) or a proto3 scalar left at 0."""
    value = getattr(message, name, None)
    has_field = getattr(message, "HasField", None)
    if has_field is not None:
        try:
            if not has_field(name):
                return None
        except ValueError:
            if not value:
                return None
    return value


def _prompt_codes(message: Any) -> np.ndarray | None:
    value = _read(message, "prompt_codes")
    if value is None or isinstance(value, np.ndarray):
        return value
    from services.runtime.codec import proto_to_numpy

    return proto_to_numpy(value, f"{OPTIONS_FIELD}.prompt_codes")


def parse_options(message: Any) -> MusicgenOptions:
    """Options from any object with the attributes `greedy`, `top_k`, `top_p`, `temperature` and
    optionally `prompt_codes` (the proto message, a namespace); an absent or unset field (0 for a
    proto3 scalar without presence) takes its default. Ranges are checked by the engine."""
    top_k = _read(message, "top_k")
    top_p = _read(message, "top_p")
    temperature = _read(message, "temperature")
    return MusicgenOptions(
        greedy=bool(_read(message, "greedy")),
        top_k=DEFAULT_TOP_K if top_k is None else int(top_k),
        top_p=0.0 if top_p is None else float(top_p),
        temperature=DEFAULT_TEMPERATURE if temperature is None else float(temperature),
        prompt_codes=_prompt_codes(message),
    )


def add_arguments(group: argparse._ActionsContainer) -> None:
    """The sampling flags of `songsmith latents generate` for MusicGen models, added to `group` (the
    command's group of MusicGen flags)."""
    group.add_argument(
        "--greedy", action="store_true", help="take the most likely code at every step (the seed is unused)"
    )
    group.add_argument(
        "--top-k",
        type=int,
        default=DEFAULT_TOP_K,
        help=f"sample among the k likeliest codes (default {DEFAULT_TOP_K})",
    )
    group.add_argument(
        "--top-p", type=float, default=0.0, help="nucleus sampling after top-k, 0 < p < 1 (default 0: off)"
    )
    group.add_argument(
        "--prompt-codes",
        type=Path,
        help="int64 [codebooks, frames] codes of a recording to continue (EnCodec's encoding of it)",
    )
    group.add_argument(
        "--temperature",
        type=float,
        default=DEFAULT_TEMPERATURE,
        help=f"divide the guided logits by T before sampling (default {DEFAULT_TEMPERATURE:g})",
    )


def options_from_arguments(args: argparse.Namespace) -> MusicgenOptions:
    """The options the flags of `add_arguments` give (ranges are checked by the engine);
    InvalidArgumentError on `musicgen.prompt_codes` when that file cannot be read."""
    prompt = None
    if args.prompt_codes is not None:
        try:
            prompt = codes_from_file(np.load(args.prompt_codes, allow_pickle=False))
        except (OSError, ValueError) as exc:
            raise InvalidArgumentError(
                f"{OPTIONS_FIELD}.prompt_codes", f"cannot read {args.prompt_codes}: {exc}"
            ) from exc
    return MusicgenOptions(
        greedy=args.greedy,
        top_k=args.top_k,
        top_p=args.top_p,
        temperature=args.temperature,
        prompt_codes=prompt,
    )


def codes_to_file(frames: np.ndarray) -> np.ndarray:
    """The engine's codes [frames, codebooks] as the CLI writes them: int64 [codebooks, frames]."""
    return np.ascontiguousarray(np.asarray(frames).T.astype(np.int64, copy=False))


def codes_from_file(codes: np.ndarray) -> np.ndarray:
    """A codes file [codebooks, frames] as the engine takes it: [frames, codebooks] (dtype kept, so the
    engine can refuse a non-integer file); ValueError when it is not 2-D."""
    array = np.asarray(codes)
    if array.ndim != 2:
        raise ValueError(f"expected a [codebooks, frames] array, got shape {list(array.shape)}")
    return np.ascontiguousarray(array.T)
