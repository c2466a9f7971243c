"""`songsmith latents generate`: a song's frames from its conditioning files, as .npy, for any family.

The model folder says which family runs; the common flags cover every family's conditioning and
each family adds its own (see `services.runtime.family_cli`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from services.diffusion.engine import (
    GeneratedBlock,
    GenerationProgress,
    GenerationRequest,
    GenerationSettings,
)
from services.diffusion.families import GENERATION_FAMILIES
from services.runtime.cli import report_error
from services.runtime.errors import ServiceError
from services.runtime.family_cli import add_family_arguments, family_options, to_file


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `latents generate` to the songsmith CLI (its `latents` group is listed by gateway/cli.py)."""
    latents = subparsers.add_parser("latents")
    commands = latents.add_subparsers(dest="latents_command", required=True)
    generate = commands.add_parser(
        "generate",
        help="generate a song's frames (latents or codes) into a .npy",
        description="Generate a song with the model in --model-dir (its files say the family) and "
        "write its frames: DiffRhythm 2 and v1 latents float32 [frames, 64], MusicGen codes int64 "
        "[codebooks, frames]. The same seed gives the same song on any device.",
    )
    generate.add_argument("--model-dir", required=True, type=Path, help="the model folder")
    generate.add_argument(
        "--tokens",
        type=Path,
        help="JSON list of token ids, or the output of `songsmith lyrics tokenize --json`",
    )
    generate.add_argument(
        "--style", type=Path, help="the style stage's output for the prompt or recording (.npy)"
    )
    generate.add_argument(
        "--melody", type=Path, help="the style stage's output for a melody recording (.npy)"
    )
    generate.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    generate.add_argument("--steps", type=int, default=0, help="sampler steps (default: the family's)")
    generate.add_argument("--cfg", type=float, help="guidance strength, 0..20 (default: the family's)")
    generate.add_argument(
        "--max-frames", type=int, default=0, help="song length cap in frames (default: the family's)"
    )
    generate.add_argument("--seconds", type=float, default=0.0, help="song length for fixed-length families")
    generate.add_argument("-o", "--output", required=True, type=Path, help="where to write the .npy")
    generate.add_argument("--device", default="cpu", help="torch device (default cpu)")
    generate.add_argument("--dtype", default="float32", help="float32, or float16/bfloat16 on CUDA")
    add_family_arguments(generate, GENERATION_FAMILIES)
    generate.set_defaults(func=run_generate)


class InputError(Exception):
    """A CLI input file is unreadable or malformed."""


def read_tokens(path: Path) -> np.ndarray:
    """Token ids from a JSON list, or from an object with a "tokens" list (the tokenizer's --json)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from exc
    if isinstance(raw, dict):
        raw = raw.get("tokens")
    if not isinstance(raw, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in raw):
        raise InputError(f'{path} must hold a list of integer token ids or an object with a "tokens" list')
    return np.array(raw, dtype=np.int64)


def read_array(path: Path | None) -> np.ndarray | None:
    """An array from a .npy file (None when no path was given)."""
    if path is None:
        return None
    try:
        return np.load(path, allow_pickle=False)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise InputError(f"{path} is not a .npy array: {exc}") from exc


def run_generate(args: argparse.Namespace) -> int:
    """Load the model, generate with a progress bar on stderr, write the frames; 2 with one line on error."""
    try:
        tokens = read_tokens(args.tokens) if args.tokens is not None else None
        style, melody = read_array(args.style), read_array(args.melody)
        family = GENERATION_FAMILIES.detect(args.model_dir)
        options = family_options(args, family)
        settings = GenerationSettings(args.device, args.dtype)
        engine = family.load(args.model_dir, settings)
        request = GenerationRequest(
            tokens=tokens,
            style=style,
            melody=melody,
            seed=args.seed,
            steps=args.steps,
            cfg_strength=args.cfg,
            max_frames=args.max_frames,
            seconds=args.seconds,
            options=options,
        )
        blocks: list[np.ndarray] = []
        events = engine.generate(request)
        with tqdm(unit="block", file=sys.stderr) as progress:
            for event in events:
                if isinstance(event, GeneratedBlock):
                    blocks.append(event.frames)
                    progress.total = event.max_blocks
                    progress.update(1)
                elif isinstance(event, GenerationProgress):
                    progress.set_postfix_str(f"step {event.step}/{event.total_steps}")
    except InputError as exc:
        return report_error(str(exc))
    except ServiceError as exc:
        return report_error(exc.message)
    except (ValueError, FileNotFoundError) as exc:
        return report_error(str(exc))
    frames = np.concatenate(blocks)
    song = to_file(family, frames)
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with args.output.open("wb") as handle:
            np.save(handle, song)
    except OSError as exc:
        return report_error(f"cannot write {args.output}: {exc.strerror or exc}")
    seconds = len(frames) / engine.info.frame_rate if engine.info.frame_rate else 0.0
    print(f"wrote {args.output}: {song.dtype} {list(song.shape)} ({seconds:.1f} s)")
    return 0
