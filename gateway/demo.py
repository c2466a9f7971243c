"""`songsmith demo` (what `make demo` runs): the whole system end to end on the demo model.

Writes the tiny random-weight demo model when no model is installed, starts the four stages and the
gateway as local processes, makes a song from the example lyrics that ship inside the package
(`gateway/examples/morning-light.txt`) through the gateway, stops the stack and says where the song is.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gateway import model_store
from gateway.launcher import LocalStack, plan
from gateway.local_stages import ModelPaths

EXAMPLE_LYRICS = Path(__file__).resolve().parent / "examples" / "morning-light.txt"
EXAMPLE_STYLE = "warm indie folk, acoustic guitar, female vocal"


def run_demo(model_root: Path, output: Path, var_dir: Path, max_secs: float, port: int) -> int:
    """Make `output` from the example lyrics through a local stack; returns the exit code."""
    from gateway.cli import CommandError, RemoteRunner, Song, _make, _report, build_request

    paths = ModelPaths.under(model_root)
    demo = not (paths.diffrhythm2 / "model.safetensors").is_file() or not paths.mulan.is_dir()
    if demo:
        print(f"writing the demo model into {model_root} ...", file=sys.stderr)
        model_store.write_demo(model_root)
        paths = ModelPaths.under(model_root)
    stack = LocalStack(plan(port, 0), paths, var_dir)
    print("starting the local stack (4 stages + gateway) ...", file=sys.stderr)
    stack.start()
    try:
        problems = stack.wait_healthy(300)
        if problems:
            raise CommandError(f"the stack did not come up: {'; '.join(problems)} (logs in {var_dir}/logs)")
        request = build_request(
            EXAMPLE_LYRICS.read_text(encoding="utf-8"), EXAMPLE_STYLE, None, output, 7, None, None, max_secs
        )
        song = Song("demo", request, output)
        _report(song, _make(RemoteRunner(stack.services[0].address, ""), song, quiet=False))
    finally:
        stack.stop()
    print(f"\nyour song is at {output.resolve()}")
    if paths.mulan.name.endswith("-demo"):
        print(
            "it was made with the untrained demo model (random weights), so it sounds like noise; "
            "`songsmith models pull diffrhythm2` downloads the real DiffRhythm 2 weights"
        )
    return 0
