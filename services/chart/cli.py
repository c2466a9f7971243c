"""`songsmith chart generate`: osu!mania charts for a song file, with a local chart model.

    songsmith chart generate --model-dir DIR --audio SONG.wav --seed N --steps N --cfg S
        [--feature NAME=VALUE ...] -o CHART.osu [--latents-out LAT.npy]
    songsmith chart generate ... --count N -o DIR

One chart by default: `-o` is the `.osu` file and `--latents-out` gets the sampler's final latents as
float32 [16, L]. With `--count N` (N > 1), `-o` is a folder that receives each chart under the name
osu! expects, and `--latents-out` gets [N, 16, L]; chart i is drawn from seed + i.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

from services.chart.engine import (
    DEFAULT_GUIDANCE,
    DEFAULT_JACK_INTERVAL_MS,
    DEFAULT_STEPS,
    Chart,
    ChartProgress,
    ChartRequest,
    ChartSettings,
    SongAudio,
)
from services.runtime.cli import report_error
from services.runtime.errors import ServiceError

# The reference app draws a seed in 1..1e8 when asked for a random one (seed -1).
RANDOM_SEED_RANGE = (1, 100_000_000)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `chart generate` to the songsmith CLI."""
    chart = subparsers.add_parser("chart")
    commands = chart.add_subparsers(dest="chart_command", required=True)
    generate = commands.add_parser(
        "generate",
        help="write osu!mania 4-key charts (.osu) for a song",
        description="Make charts exactly as the Mug-Diffusion app does (DDIM with guidance, grid "
        "snapping, mini-jack clean-up). Chart controls: --feature NAME=VALUE with NAME from the "
        "model's feature list (sr, rank_status, ln_ratio, rc, hb, ln, ett, <pattern>, <pattern>_ett "
        "for stamina, stream, jumpstream, handstream, jackspeed, chordjack, technical); numbers as "
        "decimals, booleans true/false, rank_status as ranked/loved/graveyard.",
    )
    generate.add_argument(
        "--model-dir", required=True, type=Path, help="folder with model.ckpt and model.yaml"
    )
    generate.add_argument("--audio", required=True, type=Path, help="the song (WAV, FLAC, MP3 or OGG)")
    generate.add_argument(
        "--seed", type=int, default=0, help="seed of the first chart; negative: a random one"
    )
    generate.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="sampling steps (default 100)")
    generate.add_argument("--cfg", type=float, default=DEFAULT_GUIDANCE, help="guidance scale (default 5.0)")
    generate.add_argument(
        "--feature", action="append", default=[], metavar="NAME=VALUE", help="a chart control; repeat it"
    )
    generate.add_argument(
        "-o", "--output", required=True, type=Path, help=".osu file (a folder with --count)"
    )
    generate.add_argument("--latents-out", type=Path, help="write the final latents (float32 .npy)")
    generate.add_argument("--count", type=int, default=1, help="charts to make in one batch (default 1)")
    generate.add_argument("--title", default="", help="song title for the header (default: the file's name)")
    generate.add_argument("--artist", default="", help="artist for the header")
    generate.add_argument("--no-snap", action="store_true", help="do not move notes onto the beat grid")
    generate.add_argument(
        "--jack-interval", type=float, default=DEFAULT_JACK_INTERVAL_MS, help="mini-jack interval in ms (90)"
    )
    generate.add_argument("--device", default="cpu", help="torch device (default cpu)")
    generate.set_defaults(func=run_generate)


def _targets(args: argparse.Namespace, charts: list[Chart]) -> list[Path]:
    if args.count == 1:
        return [args.output]
    return [args.output / chart.file_name for chart in charts]


def run_generate(args: argparse.Namespace) -> int:
    """Handler of `songsmith chart generate`; returns the exit code."""
    from services.chart.families import CHART_FAMILIES

    if args.count > 1 and args.output.suffix.lower() == ".osu":
        return report_error(f"with --count {args.count}, -o names a folder, not {args.output}")
    try:
        data = args.audio.read_bytes()
    except OSError as exc:
        return report_error(f"cannot read {args.audio}: {exc.strerror or exc}")
    seed = args.seed if args.seed >= 0 else random.randint(*RANDOM_SEED_RANGE)
    try:
        engine = CHART_FAMILIES.load(
            args.model_dir, ChartSettings(device=args.device, max_count=max(args.count, 1))
        )
        request = ChartRequest(
            audio=SongAudio(encoded=data),
            features=engine.parse_features(args.feature),
            seed=seed,
            steps=args.steps,
            guidance=args.cfg,
            count=args.count,
            snap=not args.no_snap,
            jack_interval_ms=args.jack_interval,
            title=args.title or args.audio.stem,
            artist=args.artist,
            audio_filename=f"audio{args.audio.suffix.lower()}",
        )
        charts = []
        for event in engine.generate(request):
            if isinstance(event, ChartProgress):
                print(f"\rstep {event.step}/{event.total_steps}", end="", file=sys.stderr, flush=True)
            else:
                charts.append(event)
        print(file=sys.stderr)
    except ServiceError as exc:
        return report_error(exc.message)
    try:
        if args.count > 1:
            args.output.mkdir(parents=True, exist_ok=True)
        for chart, target in zip(charts, _targets(args, charts), strict=True):
            target.write_text(chart.osu, encoding="utf-8")
            print(f"wrote {target} ({len(chart.hit_objects)} notes, {chart.bpm:.2f} BPM, seed {chart.seed})")
        if args.latents_out is not None:
            latents = charts[0].latents if args.count == 1 else np.stack([chart.latents for chart in charts])
            np.save(args.latents_out, latents.astype(np.float32))
    except OSError as exc:
        return report_error(f"cannot write the output: {exc}")
    return 0
