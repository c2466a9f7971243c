"""DiffRhythm v1 in the vocoder stage: the Oobleck VAE (44.1 kHz stereo) and its chunked windows.

A model folder holds `vae_model.pt` (a TorchScript archive from `ASLP-lab/DiffRhythm-vae`), opened
only when the folder's manifest `songsmith-model.json` pins its sha256.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from services.runtime.families import Family, FamilyCli
from services.runtime.model_files import has_files


def _detect(model_dir: Path) -> bool:
    return has_files(model_dir, "vae_model.pt")


def _load(model_dir: Path, settings):
    from services.vocoder.diffrhythm1.engine import DiffRhythm1Vocoder

    return DiffRhythm1Vocoder.from_settings(model_dir, settings)


def _add_arguments(parser: argparse._ActionsContainer) -> None:
    parser.add_argument(
        "--chunked",
        action="store_true",
        help="decode in the reference's 128-frame windows (bounded memory) instead of in one call",
    )


def _options(args: argparse.Namespace):
    from services.vocoder.diffrhythm1.engine import DecodeOptions

    return DecodeOptions(chunked=args.chunked)


FAMILY = Family(
    name="diffrhythm1",
    detect=_detect,
    load=_load,
    describe="vae_model.pt (pinned in songsmith-model.json)",
    cli=FamilyCli(add_arguments=_add_arguments, options=_options),
)
