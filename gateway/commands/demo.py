"""`songsmith demo` (what `make demo` runs): the whole system end to end on the demo model.

Writes the tiny random-weight demo models when no model is installed (the demo chart model when no
chart model is), starts the stages, the chart stage and the gateway as local processes, makes a song
from the example lyrics that ship inside the package (`gateway/examples/morning-light.txt`) and an
osu!mania chart of it through the gateway, stops the stack and says where the song and the `.osz` are.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gateway.commands.common import CommandError, add_model_root
from gateway.commands.songs import (
    RemoteRunner,
    Song,
    SongSettings,
    build_request,
    chart_request,
    make_song,
    report_song,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXAMPLE_LYRICS = EXAMPLES / "morning-light.txt"
EXAMPLE_STYLE = "warm indie folk, acoustic guitar, female vocal"
DEMO_MODEL = "diffrhythm2"
# The demo chart: the app's default prompt (ranked, 4 stars), few steps so that `make demo` stays fast.
DEMO_CHART_FEATURES = ["rank_status=ranked", "sr=4"]
DEMO_CHART_STEPS = 20


def run_demo(model_root: Path, output: Path, var_dir: Path, max_secs: float, port: int) -> int:
    """Make `output` from the example lyrics through a local stack; returns the exit code."""
    from gateway import model_store
    from gateway.client import SongClient
    from gateway.launcher import LocalStack, plan
    from gateway.models import discover, find_chart_model

    if not (model_root / DEMO_MODEL / "model.safetensors").is_file():
        print(f"writing the demo model into {model_root} ...", file=sys.stderr)
        model_store.write_demo(model_root)
    chart_model = find_chart_model(model_root)
    if chart_model is None:
        print(f"writing the demo chart model into {model_root} ...", file=sys.stderr)
        chart_model = model_store.write_chart_demo(model_root)
    routes = discover(model_root)
    stack = LocalStack(plan(routes, port, 0, chart_model), var_dir)
    print(f"starting the local stack ({len(stack.services)} processes) ...", file=sys.stderr)
    stack.start()
    try:
        problems = stack.wait_healthy(300)
        if problems:
            raise CommandError(f"the stack did not come up: {'; '.join(problems)} (logs in {var_dir}/logs)")
        charts = chart_request(DEMO_CHART_FEATURES, 1, DEMO_CHART_STEPS, "Morning Light")
        settings = SongSettings(model=DEMO_MODEL, seed=7, max_secs=max_secs, charts=charts)
        lyrics = EXAMPLE_LYRICS.read_text(encoding="utf-8")
        song = Song("demo", build_request(lyrics, EXAMPLE_STYLE, None, output, settings), output)
        report_song(song, make_song(RemoteRunner(SongClient(stack.plan.gateway.address)), song, quiet=False))
    finally:
        stack.stop()
    print(f"\nyour song is at {output.resolve()}")
    if any(route.stages.get("style", "").endswith("-demo") for route in routes if route.name == DEMO_MODEL):
        print(
            "it was made with the untrained demo model (random weights), so it sounds like noise; "
            "`songsmith models pull diffrhythm2` downloads the real DiffRhythm 2 weights"
        )
    print(f"\nits osu!mania chart is in {song.osz_output.resolve()} (open it with osu!)")
    if _untrained(chart_model):
        print(
            "the chart was made with the untrained demo chart model (random weights), so its notes are "
            "noise; `songsmith models import mug PATH` brings in the real Mug-Diffusion model"
        )
    return 0


def _untrained(model_dir: Path) -> bool:
    """True when the model folder's manifest says its weights are untrained (a demo model)."""
    from services.runtime.model_info import MANIFEST_FILE

    try:
        manifest = json.loads((model_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    source = manifest.get("source") if isinstance(manifest, dict) else None
    return isinstance(source, dict) and source.get("untrained") is True


def run_demo_command(args: argparse.Namespace) -> int:
    """The end-to-end demo: local stack, one example song, stack stopped."""
    return run_demo(Path(args.model_root), Path(args.output), Path(args.var_dir), args.max_secs, args.port)


def register(commands: argparse._SubParsersAction) -> None:
    """Add `demo`."""
    demo = commands.add_parser(
        "demo", help="end to end on the demo models: local stack, one song and its chart, stop"
    )
    add_model_root(demo)
    demo.add_argument("-o", "--output", default="out/demo.mp3")
    demo.add_argument("--var-dir", default="out/var")
    demo.add_argument("--max-secs", type=float, default=30.0, help="song length cap (default 30 s)")
    demo.add_argument("--port", type=int, default=50050, help="gateway port; the stages take the next ones")
    demo.set_defaults(func=run_demo_command)
