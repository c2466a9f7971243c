"""What the command modules share: the one-line command error, the gateway connection options and
the client they make."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.client import SongClient

DEFAULT_SERVER_ENV = "SONGSMITH_SERVER"
TOKEN_ENV = "SONGSMITH_TOKEN"
MODEL_ROOT_ENV = "SONGSMITH_MODEL_ROOT"
# The client's TLS files (not SONGSMITH_TLS_*: those are a server's own certificate and key).
TLS_OPTIONS = {
    "tls_ca": ("SONGSMITH_CLIENT_TLS_CA", "PEM CA bundle that signed the gateway's certificate"),
    "tls_cert": (
        "SONGSMITH_CLIENT_TLS_CERT",
        "PEM client certificate, for a gateway that asks for one (mTLS)",
    ),
    "tls_key": ("SONGSMITH_CLIENT_TLS_KEY", "PEM private key of --tls-cert"),
}


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
    """`--server` (into `server_group` when given), `--token` and the TLS options for reaching a gateway."""
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
    tls = parser.add_argument_group("TLS to the gateway (any of these turns it on; no CA: the system's)")
    for dest, (env, text) in TLS_OPTIONS.items():
        tls.add_argument(
            "--" + dest.replace("_", "-"),
            dest=dest,
            default=os.environ.get(env, ""),
            help=f"{text} (env {env})",
        )


def _read_pem(path: str, flag: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {flag} {path}: {exc.strerror or exc}", 2) from exc


def connect(args: argparse.Namespace) -> SongClient:
    """A client for the gateway that `--server`, `--token` and the TLS options name: plaintext, TLS
    (`--tls-ca`, or the system's CAs) or mutual TLS (`--tls-cert` with `--tls-key`)."""
    import grpc

    from gateway.client import SongClient

    if bool(args.tls_cert) != bool(args.tls_key):
        raise CommandError("--tls-cert and --tls-key go together", 2)
    credentials = None
    if args.tls_ca or args.tls_cert:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read_pem(args.tls_ca, "--tls-ca") if args.tls_ca else None,
            private_key=_read_pem(args.tls_key, "--tls-key") if args.tls_key else None,
            certificate_chain=_read_pem(args.tls_cert, "--tls-cert") if args.tls_cert else None,
        )
    return SongClient(args.server, args.token, credentials)


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
