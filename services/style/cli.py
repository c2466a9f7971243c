"""`songsmith style embed`: a style model's output for a prompt or a recording, saved as .npy."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from services.runtime.cli import report_error
from services.runtime.errors import ServiceError
from services.style.engine import CROP_WHOLE, StyleLimits, StyleSettings
from services.style.families import STYLE_FAMILIES

# The CLI embeds local files its user chose, so the service's size caps do not apply (decoding keeps
# memory to the recording at the model rate whatever the source's rate and channels).
CLI_LIMITS = StyleLimits(
    max_prompt_chars=1_000_000,
    max_audio_seconds=float("inf"),
    max_audio_bytes=1 << 62,
    max_audio_sample_rate=1 << 31,
    max_audio_channels=1 << 16,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `style embed` to the songsmith CLI (its `style` group is listed by gateway/cli.py)."""
    style = subparsers.add_parser("style")
    commands = style.add_subparsers(dest="style_command", required=True)
    embed = commands.add_parser(
        "embed",
        help="embed a text prompt or a whole recording into the model's conditioning (.npy)",
        description="Embed a prompt or a recording (WAV, FLAC, MP3 or OGG) with the style model in "
        "--model-dir and save the result as float32: MuQ-MuLan a [512] vector (a recording: every "
        "10 s clip averaged, as MuQ-MuLan's own mulan(wavs=...) does); MusicGen the T5 states "
        "[tokens, d_text] of a prompt, or a melody model's chroma [frames, 12] of a recording.",
    )
    embed.add_argument("--model-dir", required=True, type=Path, help="the style model folder")
    source = embed.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="style prompt to embed")
    source.add_argument("--audio", type=Path, help="audio file to embed")
    embed.add_argument("-o", "--output", required=True, type=Path, help="where to write the .npy")
    embed.add_argument("--device", default="cpu", help="torch device (default cpu)")
    embed.set_defaults(func=run_embed)


def run_embed(args: argparse.Namespace) -> int:
    """Load the model, embed the prompt or recording, write the result; 2 with one line on error."""
    if args.audio is not None:
        try:
            data = args.audio.read_bytes()
        except OSError as exc:
            return report_error(f"cannot read {args.audio}: {exc.strerror or exc}")
    try:
        settings = StyleSettings(args.device, CLI_LIMITS, text_cache_size=0)
        engine = STYLE_FAMILIES.load(args.model_dir, settings)
        if args.audio is None:
            vector = engine.embed_text(args.text).vector
            detail = "text prompt"
        else:
            result = engine.embed_audio(data, crop=CROP_WHOLE)
            vector = result.vector
            clips = f"{result.clips} clip(s), " if result.clips else ""
            detail = f"{clips}{result.seconds:.1f} s of audio"
    except ServiceError as exc:
        return report_error(exc.message)
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with args.output.open("wb") as handle:
            np.save(handle, vector.astype(np.float32))
    except OSError as exc:
        return report_error(f"cannot write {args.output}: {exc.strerror or exc}")
    shape = ", ".join(str(size) for size in vector.shape)
    print(f"wrote {args.output}: float32 [{shape}] from {detail}")
    return 0
