"""`songsmith latents generate`: sample a song's latents from token ids and a style vector, as .npy."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from services.diffusion.diffrhythm2.checkpoint import CheckpointError
from services.diffusion.diffrhythm2.engine import DEFAULT_CFG_STRENGTH, DEFAULT_STEPS, DiffusionEngine
from services.runtime.cli import report_error
from services.runtime.errors import ServiceError

DEFAULT_MAX_FRAMES = 1050  # 210 s, the reference's default length cap


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `latents` command group (`latents generate`) to the songsmith CLI."""
    latents = subparsers.add_parser("latents", help="DiffRhythm 2 latent sampling")
    commands = latents.add_subparsers(dest="latents_command", required=True)
    generate = commands.add_parser(
        "generate",
        help="sample a song's latents into a float32 [frames, 64] .npy",
        description="Sample latents block by block (10 frames = 2 s each) until the model ends the "
        "song or --max-frames is reached. The same seed gives the same latents on any device.",
    )
    generate.add_argument(
        "--model-dir", required=True, type=Path, help="folder with model.safetensors + config.json"
    )
    generate.add_argument(
        "--tokens",
        required=True,
        type=Path,
        help="JSON list of token ids, or the output of `songsmith lyrics tokenize --json`",
    )
    generate.add_argument("--style", required=True, type=Path, help="float32 [512] style vector (.npy)")
    generate.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    generate.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help="Euler grid points per block, 2..200"
    )
    generate.add_argument("--cfg", type=float, default=DEFAULT_CFG_STRENGTH, help="guidance strength, 0..20")
    generate.add_argument(
        "--max-frames", type=int, default=DEFAULT_MAX_FRAMES, help="song length cap in frames (5 per second)"
    )
    generate.add_argument("-o", "--output", required=True, type=Path, help="where to write the latents .npy")
    generate.add_argument("--device", default="cpu", help="torch device (default cpu)")
    generate.add_argument("--dtype", default="float32", help="float32, or float16/bfloat16 on CUDA")
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


def read_style(path: Path) -> np.ndarray:
    """The style vector from a .npy file."""
    try:
        return np.load(path, allow_pickle=False)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise InputError(f"{path} is not a .npy array: {exc}") from exc


def run_generate(args: argparse.Namespace) -> int:
    """Load the model, sample with a progress bar on stderr, write the latents; 2 with one line on error."""
    try:
        tokens, style = read_tokens(args.tokens), read_style(args.style)
        engine = DiffusionEngine.load(args.model_dir, args.device, args.dtype)
        blocks = engine.sample(
            tokens, style, seed=args.seed, steps=args.steps, cfg_strength=args.cfg, max_frames=args.max_frames
        )
        latents = []
        with tqdm(total=-(-args.max_frames // engine.block_size), unit="block", file=sys.stderr) as progress:
            for block in blocks:
                latents.append(block.latents)
                progress.update(1)
    except InputError as exc:
        return report_error(str(exc))
    except ServiceError as exc:
        return report_error(exc.message)
    except (CheckpointError, ValueError, FileNotFoundError) as exc:
        return report_error(str(exc))
    song = np.concatenate(latents).astype(np.float32)
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with args.output.open("wb") as handle:
            np.save(handle, song)
    except OSError as exc:
        return report_error(f"cannot write {args.output}: {exc.strerror or exc}")
    print(f"wrote {args.output}: float32 [{song.shape[0]}, {song.shape[1]}] ({song.shape[0] / 5:.1f} s)")
    return 0
