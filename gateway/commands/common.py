"""What the command modules share: the one-line command error and the gateway connection options."""

from __future__ import annotations

import argparse
import os
from typing import Any

DEFAULT_SERVER_ENV = "SONGSMITH_SERVER"
TOKEN_ENV = "SONGSMITH_TOKEN"
MODEL_ROOT_ENV = "SONGSMITH_MODEL_ROOT"


class CommandError(Exception):
    """A failure to report as one line, with the exit code to leave with."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_model_root(parser: argparse.ArgumentParser) -> None:
    """The `--model-root` option (env SONGSMITH_MODEL_ROOT): the folder of model folders."""
    parser.add_argument(
        "--model-root",
        default=os.environ.get(MODEL_ROOT_ENV, "models"),
        help=f"folder of model folders (env {MODEL_ROOT_ENV}; default models)",
    )


def add_connection_options(
    parser: argparse.ArgumentParser,
    server_default: str,
    server_group: argparse._ActionsContainer | None = None,
) -> None:
    """`--server` (into `server_group` when given) and `--token` for reaching a gateway."""
    (server_group or parser).add_argument(
        "--server",
        default=os.environ.get(DEFAULT_SERVER_ENV, server_default),
        help=f"gateway address (env {DEFAULT_SERVER_ENV})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV, ""),
        help=f"bearer token for the gateway (env {TOKEN_ENV})",
    )


class CommandGroups:
    """Lets several modules add subcommands to one group (`latents generate` comes from the generation
    stage, `latents decode` from the vocoder), which plain argparse refuses."""

    def __init__(self, subparsers: argparse._SubParsersAction) -> None:
        """Add groups to `subparsers`."""
        self._subparsers = subparsers
        self._groups: dict[str, CommandGroup] = {}

    def add_parser(self, name: str, **kwargs: Any) -> CommandGroup:
        """The group called `name`, created on first use."""
        if name not in self._groups:
            self._groups[name] = CommandGroup(self._subparsers.add_parser(name, **kwargs))
        return self._groups[name]


class CommandGroup:
    """A command group parser whose subcommand list is created once and then shared."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        """Wrap the group's parser."""
        self.parser = parser
        self._commands: argparse._SubParsersAction | None = None

    def add_subparsers(self, **kwargs: Any) -> argparse._SubParsersAction:
        """The group's subcommand list (created by the first caller)."""
        if self._commands is None:
            self._commands = self.parser.add_subparsers(**kwargs)
        return self._commands

    def __getattr__(self, name: str) -> Any:
        return getattr(self.parser, name)
