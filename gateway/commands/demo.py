"""`songsmith demo` (what `make demo` runs): the whole system end to end on the demo model.

Writes the tiny random-weight demo models when no model is installed, starts the stages and the
gateway as local processes, makes a song from the example lyrics that ship inside the package
(`gateway/examples/morning-light.txt`) through the gateway, stops the stack and says where the song is.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.commands.common import CommandError, add_model_root
from gateway.commands.songs import RemoteRunner, Song, SongSettings, build_request, make_song, report_song

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXAMPLE_LYRICS = EXAMPLES / "morning-light.txt"
EXAMPLE_STYLE = "warm indie folk, acoustic guitar, female vocal"
DEMO_MODEL = "diffrhythm2"


def run_demo(model_root: Path, output: Path, var_dir: Path, max_secs: float, port: int) -> int:
    """Make `output` from the example lyrics through a local stack; returns the exit code."""
    from gateway import model_store
    from gateway.client import SongClient
    from gateway.launcher import LocalStack, plan
    from gateway.models import discover

    if not (model_root / DEMO_MODEL / "model.safetensors").is_file():
        print(f"writing the demo model into {model_root} ...", file=sys.stderr)
        model_store.write_demo(model_root)
    routes = discover(model_root)
    stack = LocalStack(plan(routes, port, 0), var_dir)
    print(f"starting the local stack ({len(stack.services)} processes) ...", file=sys.stderr)
    stack.start()
    try:
        problems = stack.wait_healthy(300)
        if problems:
            raise CommandError(f"the stack did not come up: {'; '.join(problems)} (logs in {var_dir}/logs)")
        settings = SongSettings(model=DEMO_MODEL, seed=7, max_secs=max_secs)
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
    return 0


def run_demo_command(args: argparse.Namespace) -> int:
    """The end-to-end demo: local stack, one example song, stack stopped."""
    return run_demo(Path(args.model_root), Path(args.output), Path(args.var_dir), args.max_secs, args.port)


def register(commands: argparse._SubParsersAction) -> None:
    """Add `demo`."""
    demo = commands.add_parser("demo", help="end to end on the demo model: local stack, one song, stop")
    add_model_root(demo)
    demo.add_argument("-o", "--output", default="out/demo.mp3")
    demo.add_argument("--var-dir", default="out/var")
    demo.add_argument("--max-secs", type=float, default=30.0, help="song length cap (default 30 s)")
    demo.add_argument("--port", type=int, default=50050, help="gateway port; the stages take the next ones")
    demo.set_defaults(func=run_demo_command)
