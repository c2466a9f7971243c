"""`songsmith latents decode`: turn a latents .npy into audio (.npy samples or a 48 kHz .wav)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile

from services.runtime.cli import report_error
from services.runtime.errors import ServiceError
from services.vocoder.diffrhythm2.engine import DEFAULT_MAX_FRAMES, VocoderEngine

OUTPUT_SUFFIXES = (".npy", ".wav")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `latents decode` to the songsmith CLI (the `latents` group is shared with the diffusion stage)."""
    latents = subparsers.add_parser("latents", help="DiffRhythm 2 latent sampling and decoding")
    commands = latents.add_subparsers(dest="latents_command", required=True)
    decode = commands.add_parser(
        "decode",
        help="decode float32 [frames, 64] latents into mono 48 kHz audio (.npy or .wav)",
        description="Decode latents with the BigVGAN decoder exactly as the reference does (20-frame "
        "windows, overlap 5, the last window aligned to the end; a song under 20 frames is one "
        "window). Writes mono float32 samples before any fake stereo: a .npy array [samples] or a "
        "32-bit float .wav.",
    )
    decode.add_argument(
        "--model-dir", required=True, type=Path, help="folder with decoder.bin + decoder.json"
    )
    decode.add_argument("latents", type=Path, help="float32 [frames, 64] latents (.npy)")
    decode.add_argument("-o", "--output", required=True, type=Path, help="where to write audio: .npy or .wav")
    decode.add_argument("--device", default="cpu", help="torch device (default cpu)")
    decode.add_argument(
        "--max-frames", type=int, default=DEFAULT_MAX_FRAMES, help="longest song accepted, in frames"
    )
    decode.set_defaults(func=run_decode)


def run_decode(args: argparse.Namespace) -> int:
    """Handler of `songsmith latents decode`; returns the exit code."""
    suffix = args.output.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        return report_error(f"output {args.output} must end in .npy or .wav")
    try:
        latents = np.load(args.latents, allow_pickle=False)
    except (OSError, ValueError) as exc:
        return report_error(f"cannot read latents from {args.latents}: {exc}")
    try:
        engine = VocoderEngine.load(args.model_dir, device=args.device, max_frames=args.max_frames)
        audio = engine.decode(latents)[0]
    except ServiceError as exc:
        return report_error(f"{args.latents}: {exc.message}")
    try:
        if suffix == ".npy":
            np.save(args.output, audio)
        else:
            soundfile.write(args.output, audio, engine.sample_rate, subtype="FLOAT")
    except OSError as exc:
        return report_error(f"cannot write {args.output}: {exc}")
    seconds = len(audio) / engine.sample_rate
    print(f"wrote {args.output} ({seconds:.1f} s, {engine.sample_rate} Hz mono)", file=sys.stderr)
    return 0
