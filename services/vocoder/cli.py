"""`songsmith latents decode`: turn a song's frames (.npy) into audio (.npy samples or a .wav), any family."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile

from services.runtime.cli import report_error
from services.runtime.errors import ServiceError
from services.runtime.family_cli import add_family_arguments, family_options, from_file, to_file
from services.vocoder.engine import VocoderSettings
from services.vocoder.families import VOCODER_FAMILIES

OUTPUT_SUFFIXES = (".npy", ".wav")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `latents decode` to the songsmith CLI (the `latents` group is shared with the generation stage)."""
    latents = subparsers.add_parser("latents")
    commands = latents.add_subparsers(dest="latents_command", required=True)
    decode = commands.add_parser(
        "decode",
        help="decode a song's frames into audio (.npy or .wav)",
        description="Decode frames with the decoder in --model-dir exactly as the family's reference "
        "does. DiffRhythm 2: latents [frames, 64] to mono 48 kHz samples [samples] before any fake "
        "stereo (BigVGAN, 20-frame windows, overlap 5, the last window aligned to the end). A .npy "
        "output holds the float32 array, a .wav 32-bit float samples.",
    )
    decode.add_argument("--model-dir", required=True, type=Path, help="the model folder")
    decode.add_argument(
        "frames", type=Path, help="the song's frames (.npy), as `latents generate` wrote them"
    )
    decode.add_argument("-o", "--output", required=True, type=Path, help="where to write audio: .npy or .wav")
    decode.add_argument("--device", default="cpu", help="torch device (default cpu)")
    decode.add_argument(
        "--max-frames", type=int, default=0, help="longest song accepted, in frames (default: the family's)"
    )
    add_family_arguments(decode, VOCODER_FAMILIES)
    decode.set_defaults(func=run_decode)


def run_decode(args: argparse.Namespace) -> int:
    """Handler of `songsmith latents decode`; returns the exit code."""
    suffix = args.output.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        return report_error(f"output {args.output} must end in .npy or .wav")
    try:
        frames = np.load(args.frames, allow_pickle=False)
    except (OSError, ValueError) as exc:
        return report_error(f"cannot read frames from {args.frames}: {exc}")
    try:
        family = VOCODER_FAMILIES.detect(args.model_dir)
        options = family_options(args, family)
        engine = family.load(args.model_dir, VocoderSettings(args.device, args.max_frames))
        audio = engine.decode(from_file(family, frames), options=options)
    except ServiceError as exc:
        return report_error(f"{args.frames}: {exc.message}")
    rate = engine.info.sample_rate
    try:
        if suffix == ".npy":
            np.save(args.output, to_file(family, audio))
        else:
            soundfile.write(args.output, audio.T, rate, subtype="FLOAT")
    except OSError as exc:
        return report_error(f"cannot write {args.output}: {exc}")
    channels = "mono" if audio.shape[0] == 1 else f"{audio.shape[0]} channels"
    print(f"wrote {args.output} ({audio.shape[1] / rate:.1f} s, {rate} Hz {channels})", file=sys.stderr)
    return 0
