"""The `songsmith` command: serve a component, start a local stack, make songs, manage jobs and models.

Each command group lives in its own module under `gateway/commands/`; stage commands (`lyrics`,
`style`, `latents`) are added by the stages' own `cli.register`. Modules import their heavy
dependencies (torch, the engines) only when their command runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from gateway.commands import demo, jobs, models, serve, songs
from gateway.commands.common import CommandError, CommandGroups

STAGE_CLIS = (
    "services.tokenizer.cli",
    "services.style.cli",
    "services.diffusion.cli",
    "services.vocoder.cli",
    "services.chart.cli",
)
COMMAND_MODULES = (serve, demo, songs, jobs, models)


def build_parser() -> argparse.ArgumentParser:
    """The whole `songsmith` argument tree."""
    parser = argparse.ArgumentParser(prog="songsmith", description="Lyrics plus a style in, a song out.")
    commands = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(commands)
    groups = CommandGroups(commands)
    for module in STAGE_CLIS:
        importlib.import_module(module).register(groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `songsmith` console script; returns the exit code.

    OpenMP threads sleep between parallel regions unless `OMP_WAIT_POLICY` says otherwise: spinning
    threads starve every other process on a shared machine (stages, or a `generate` beside them).
    The default is set here, before the parser imports the stage commands and with them torch
    (libgomp reads it once, when torch loads); the processes `up` starts inherit it.
    """
    serve.passive_openmp()
    from services.runtime.cli import USAGE_ERROR, report_error
    from services.runtime.errors import InvalidArgumentError, ServiceError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CommandError as exc:
        return report_error(str(exc), exc.exit_code)
    except ServiceError as exc:
        return report_error(exc.message, USAGE_ERROR if isinstance(exc, InvalidArgumentError) else 1)
    except KeyboardInterrupt:
        print("songsmith: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
