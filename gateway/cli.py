"""The `songsmith` command: serve a component, start a local stack, make songs, manage jobs and models.

Each command group lives in its own module under `gateway/commands/`; stage commands (`lyrics`,
`style`, `latents`) are added by the stages' own `cli.register`. The stage modules import the engines'
code, so they are imported only when their group is the command being run: `songsmith --help`, the job
commands and the gateway client never load torch, transformers or a lyric front end. The other modules
import their heavy dependencies only when their command runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from gateway.commands import demo, jobs, models, serve, songs
from gateway.commands.common import CommandError, CommandGroups

# Stage command groups: name -> (help, the stage modules that add its subcommands).
STAGE_GROUPS = {
    "lyrics": ("lyrics to a model's tokens", ("services.tokenizer.cli",)),
    "style": ("style conditioning from a prompt or a recording", ("services.style.cli",)),
    "latents": ("generate and decode a song's frames", ("services.diffusion.cli", "services.vocoder.cli")),
    "chart": ("osu!mania charts for a song (Mug-Diffusion)", ("services.chart.cli",)),
}
COMMAND_MODULES = (serve, demo, songs, jobs, models)


def _command(argv: list[str]) -> str:
    """The command `argv` runs: its first word that is not an option ("" when there is none)."""
    return next((word for word in argv if not word.startswith("-")), "")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The `songsmith` argument tree for `argv` (default: this process's arguments). Every command is
    listed; a stage group gets its subcommands only when it is the command being run."""
    command = _command(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="songsmith", description="Lyrics plus a style in, a song out.")
    commands = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(commands)
    groups = CommandGroups(commands)
    for name, (text, modules) in STAGE_GROUPS.items():
        groups.add_parser(name, help=text)
        if name == command:
            for module in modules:
                importlib.import_module(module).register(groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `songsmith` console script; returns the exit code.

    OpenMP threads sleep between parallel regions unless `OMP_WAIT_POLICY` says otherwise: spinning
    threads starve every other process on a shared machine (stages, or a `generate` beside them).
    The default is set here, before a stage command imports torch (libgomp reads it once, when torch
    loads); the processes `up` starts inherit it.
    """
    serve.passive_openmp()
    from services.runtime.cli import USAGE_ERROR, report_error
    from services.runtime.errors import InvalidArgumentError, ServiceError

    args = build_parser(argv).parse_args(argv)
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
