"""`songsmith models list|pull|demo`: which models there are, and getting their weights."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.commands.common import CommandError, add_connection_options, add_model_root


def _local_models(model_root: Path) -> list[str]:
    """One line per model servable from `model_root`: name, family, and where each stage's model is."""
    from gateway.models import discover
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
    return lines


def _served_models(server: str, token: str) -> list[str]:
    """One line per model a gateway routes to (ListModels), then one per stage of it."""
    import grpc

    from gateway.client import SongClient
    from services.runtime.interceptor import error_from_call
    from songsmith.v1 import song_pb2

    client = SongClient(server, token)
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
        lines = _served_models(args.server, args.token) if args.server else _local_models(root)
        print("\n".join(lines))
        return 0
    if args.models_command == "demo":
        diffrhythm2, mulan = model_store.write_demo(root)
        musicgen = model_store.write_musicgen_demo(root)
        print(f"demo model written: {diffrhythm2} and {mulan}")
        print(f"MusicGen demo model written: {musicgen} (songsmith generate --model {musicgen.name} ...)")
        print("they have random weights: songs made with them are noise;")
        print("`songsmith models pull diffrhythm2` (or musicgen-small, ...) gets real ones")
        return 0
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
    demo = models_commands.add_parser("demo", help="write tiny random-weight models (their songs are noise)")
    for command in (listing, pull, demo):
        add_model_root(command)
        command.set_defaults(func=run_models)
