"""`songsmith models list|pull|import|demo`: which models there are, and getting their weights."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.commands.common import CommandError, add_connection_options, add_model_root, connect


def _local_models(model_root: Path) -> list[str]:
    """One line per model servable from `model_root`: name, family, and where each stage's model is."""
    from gateway.models import discover, find_chart_model
    from services.chart.families import CHART_FAMILIES
    from services.diffusion.families import GENERATION_FAMILIES
    from services.runtime.errors import FailedPreconditionError

    try:
        routes = discover(model_root)
    except FailedPreconditionError as exc:
        raise CommandError(exc.message) from exc
    lines = []
    for route in routes:
        family = GENERATION_FAMILIES.detect(Path(route.stages["diffusion"].removeprefix("local:"))).name
        stages = ", ".join(
            f"{stage} {target.removeprefix('local:')}" for stage, target in route.stages.items()
        )
        lines.append(f"{route.name:<20} {family:<14} {stages}")
    chart = find_chart_model(model_root)
    if chart is not None:
        lines.append(f"{'(charts)':<20} {CHART_FAMILIES.detect(chart).name:<14} chart {chart}")
    return lines


def _served_models(args: argparse.Namespace) -> list[str]:
    """One line per model a gateway routes to (ListModels), then one per stage of it."""
    import grpc

    from services.runtime.interceptor import error_from_call
    from songsmith.v1 import song_pb2

    client = connect(args)
    try:
        reply = client.stub.ListModels(song_pb2.ListModelsRequest(), metadata=client.metadata, timeout=30)
    except grpc.RpcError as exc:
        raise error_from_call(exc, "gateway") from exc
    finally:
        client.close()
    lines = []
    for model in reply.models:
        default = " (default)" if model.default else ""
        lines.append(
            f"{model.name}{default}: {model.model.family or '?'} revision {model.model.revision[:12] or '?'}"
        )
        for stage in model.stages:
            state = (
                f"{stage.model.name} {stage.model.revision[:12]}" if stage.HasField("model") else stage.error
            )
            lines.append(f"  {stage.stage:<10} {stage.target:<32} {state}")
    return lines


def run_models(args: argparse.Namespace) -> int:
    """List models, download the published weights, or write the demo models."""
    from gateway import model_store

    root = Path(args.model_root)
    if args.models_command == "list":
        lines = _served_models(args) if args.server else _local_models(root)
        print("\n".join(lines))
        return 0
    if args.models_command == "demo":
        diffrhythm2, mulan = model_store.write_demo(root)
        chart = model_store.write_chart_demo(root)
        musicgen = model_store.write_musicgen_demo(root)
        print(f"demo model written: {diffrhythm2} and {mulan}")
        diffrhythm1 = model_store.write_demo_diffrhythm1(root)
        print(f"DiffRhythm v1 demo model (96..285 s songs) written: {diffrhythm1}")
        print(f"MusicGen demo model written: {musicgen} (songsmith generate --model {musicgen.name} ...)")
        print("they have random weights: songs made with them are noise;")
        print("`songsmith models pull diffrhythm2` (or diffrhythm1, diffrhythm1-full, musicgen-small, ...)")
        print("gets real ones")
        print(f"demo chart model written: {chart}")
        print("it is untrained (random weights): its osu!mania charts are noise;")
        print("`songsmith models import mug PATH` brings in the real Mug-Diffusion model")
        return 0
    if args.models_command == "import":
        return _import(args.family, Path(args.path), root, args.name)
    try:
        paths = model_store.pull(
            args.model, root, report=lambda line: print(line, file=sys.stderr), endpoint=args.endpoint
        )
    except model_store.OfflineError as exc:
        raise CommandError(str(exc)) from exc
    except model_store.VerificationError as exc:
        raise CommandError(f"download check failed: {exc}") from exc
    print(f"{len(paths)} files in {root}")
    return 0


def _import(family: str, source: Path, model_root: Path, name: str) -> int:
    """Copy a chart model a user has (the published files, or their bundle) into the model root,
    checked and with its manifest."""
    from services.chart.mug.model_files import import_model
    from services.runtime.errors import FailedPreconditionError
    from services.runtime.model_info import MANIFEST_FILE

    destination = model_root / (name or family)
    if (destination / MANIFEST_FILE).is_file():
        raise CommandError(f"{destination} already holds a model; remove it or choose another --name")
    try:
        folder = import_model(source, destination, name or family)
    except FailedPreconditionError as exc:
        raise CommandError(f"cannot import {source}: {exc.message}") from exc
    except OSError as exc:
        raise CommandError(f"cannot import {source}: {exc}") from exc
    print(f"{family} model imported into {folder} (checked: every tensor loads)")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add the `models` group."""
    from gateway import model_store

    models = commands.add_parser("models", help="list models, get their weights")
    models_commands = models.add_subparsers(dest="models_command", required=True)
    listing = models_commands.add_parser(
        "list", help="the models under the model root and their families, or (--server) a gateway's"
    )
    add_connection_options(listing, "")
    pull = models_commands.add_parser("pull", help="download published weights from the Hugging Face Hub")
    pull.add_argument("model", choices=sorted(model_store.MODELS), help="the model to download")
    pull.add_argument(
        "--endpoint", default=None, help="a Hub mirror's URL (default: $HF_ENDPOINT or the Hub)"
    )
    imported = models_commands.add_parser(
        "import",
        help="bring in a model that is on no hub (Mug-Diffusion: its two files, a folder, or the "
        "released zip bundle), checked, with a manifest",
    )
    imported.add_argument("family", choices=("mug",), help="the model's family")
    imported.add_argument(
        "path", help="the zip bundle, a folder holding model.ckpt and model.yaml, or one of them"
    )
    imported.add_argument(
        "--name", default="", help="the folder (and model name) under the model root (default: mug)"
    )
    demo = models_commands.add_parser(
        "demo", help="write tiny random-weight models (their songs and charts are noise)"
    )
    for command in (listing, pull, imported, demo):
        add_model_root(command)
        command.set_defaults(func=run_models)
