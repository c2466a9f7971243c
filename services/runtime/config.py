"""One typed configuration per service, read from flags and `SONGSMITH_*` environment variables.

A service declares a dataclass that extends `ServerConfig`; `load_config` turns every field into a
`--flag-name` whose default comes from `SONGSMITH_FLAG_NAME` and then from the dataclass. Flags beat
the environment, which beats the defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

ENV_PREFIX = "SONGSMITH_"
MIB = 1 << 20

ConfigT = TypeVar("ConfigT", bound="ServerConfig")


def option(default: Any, help: str) -> Any:
    """A config field with its default and the help text shown by `--help`."""
    return field(default=default, metadata={"help": help})


@dataclass
class ServerConfig:
    """Settings every gRPC stage server shares: binding, limits, keepalive, shutdown, telemetry."""

    host: str = option("127.0.0.1", "address to bind (0.0.0.0 in a container)")
    port: int = option(50051, "gRPC port")
    metrics_port: int = option(0, "Prometheus metrics port; 0 disables the metrics endpoint")
    max_message_bytes: int = option(4 * MIB, "largest gRPC message accepted or sent, in bytes")
    max_concurrent: int = option(4, "calls served at once; further calls wait in the queue")
    max_queue: int = option(16, "calls allowed to wait; past that, RESOURCE_EXHAUSTED at once")
    control_max_concurrent: int = option(
        8, "short control calls (model info, job calls) served at once, apart from max_concurrent"
    )
    control_max_queue: int = option(32, "control calls allowed to wait; past that, RESOURCE_EXHAUSTED")
    retry_after_s: float = option(1.0, "retry delay suggested to callers turned away by admission")
    keepalive_time_s: float = option(30.0, "interval between HTTP/2 keepalive pings")
    keepalive_timeout_s: float = option(10.0, "time to wait for a keepalive ping to be answered")
    max_connection_age_s: float = option(300.0, "close connections after this long so clients re-resolve")
    max_connection_age_grace_s: float = option(600.0, "time left to calls on an aged-out connection")
    drain_delay_s: float = option(
        2.0, "on SIGTERM, time spent NOT_SERVING but still accepting calls, so load balancers notice"
    )
    shutdown_grace_s: float = option(600.0, "on SIGTERM, time in-flight calls get to finish")
    log_level: str = option("INFO", "logging level")
    log_format: str = option("json", "log line format: json or text")
    tls_cert: str = option("", "PEM server certificate; with tls_key, serve TLS")
    tls_key: str = option("", "PEM server private key")
    tls_client_ca: str = option("", "PEM CA bundle; when set, clients must present a certificate (mTLS)")

    @property
    def address(self) -> str:
        """The `host:port` the server binds."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _converter(kind: Any) -> typing.Callable[[str], Any]:
    if kind is bool:
        return _parse_bool
    if kind in (int, float, str):
        return kind
    raise TypeError(f"unsupported config field type {kind!r}")


def add_config_arguments(parser: argparse.ArgumentParser, config_cls: type[ServerConfig]) -> None:
    """Add one flag per field of `config_cls` to `parser`, defaulting from the environment."""
    hints = typing.get_type_hints(config_cls)
    for spec in dataclasses.fields(config_cls):
        convert = _converter(hints[spec.name])
        env = _env_name(spec.name)
        raw = os.environ.get(env)
        try:
            default = convert(raw) if raw is not None else spec.default
        except ValueError as exc:
            raise SystemExit(f"{env}={raw!r}: {exc}") from exc
        parser.add_argument(
            _flag_name(spec.name),
            dest=spec.name,
            type=convert,
            default=default,
            help=f"{spec.metadata.get('help', '')} (env {env}, default {default!r})",
        )


def config_from_namespace(config_cls: type[ConfigT], namespace: argparse.Namespace) -> ConfigT:
    """Build `config_cls` from parsed arguments (fields absent from the namespace keep defaults)."""
    names = {spec.name for spec in dataclasses.fields(config_cls)}
    return config_cls(**{k: v for k, v in vars(namespace).items() if k in names})


def load_config(config_cls: type[ConfigT], argv: list[str] | None = None, prog: str | None = None) -> ConfigT:
    """Parse `argv` (and the environment) into `config_cls`; exits with usage on bad flags."""
    parser = argparse.ArgumentParser(prog=prog, description=config_cls.__doc__)
    add_config_arguments(parser, config_cls)
    return config_from_namespace(config_cls, parser.parse_args(argv))
