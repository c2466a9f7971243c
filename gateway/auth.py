"""Bearer-token authentication of gateway clients (`authorization: Bearer <token>` metadata).

The tokens file has one token per line, blank lines and `#` comments ignored. After the token, a
line may give attributes as `key=value` words:

    s3cr3t-token-of-alice  name=alice
    0ps-team-token         name=ops role=admin
    legacy-token

`name` is the identity that owns the jobs submitted with the token (default: `token-` and the
first 12 hex digits of the token's sha256, so a bare token line keeps working); `role=admin` lets
the token see, watch, cancel and delete every identity's jobs (default `role=user`: its own only).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from services.runtime.errors import PermissionDeniedError, UnauthenticatedError
from services.runtime.handlers import ApplicationInterceptor, guarded

ROLES = ("user", "admin")


@dataclass(frozen=True)
class Caller:
    """Who a call comes from: the identity that owns its jobs, and whether it may see every job."""

    identity: str
    admin: bool = False


# Every caller of a gateway without tokens: one identity, so everyone sees every job.
ANONYMOUS = Caller("")


@dataclass(frozen=True)
class Token:
    """One accepted token and the caller it stands for."""

    secret: str
    caller: Caller


def token_identity(secret: str) -> str:
    """The identity of a token line without `name=`: derived from the token, never revealing it."""
    return "token-" + hashlib.sha256(secret.encode()).hexdigest()[:12]


def _parse_line(line: str, where: str) -> Token:
    secret, *words = line.split()
    attributes: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or key not in ("name", "role") or not value:
            raise ValueError(
                f"{where}: expected `name=IDENTITY` or `role=user|admin` after the token, got {word!r}"
            )
        attributes[key] = value
    role = attributes.get("role", "user")
    if role not in ROLES:
        raise ValueError(f"{where}: role must be one of {', '.join(ROLES)}, got {role!r}")
    return Token(secret, Caller(attributes.get("name", token_identity(secret)), admin=role == "admin"))


def read_tokens(path: str | Path) -> list[Token]:
    """Accepted tokens from a file (format in the module docstring); ValueError names a bad line."""
    tokens = []
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            tokens.append(_parse_line(line, f"{path}:{number}"))
    return tokens


class Authenticator:
    """Maps a call's bearer token to its caller."""

    def __init__(self, tokens: list[Token]) -> None:
        """Accept exactly `tokens` (at least one)."""
        if not tokens:
            raise ValueError("at least one token is required")
        self._tokens = tokens

    def caller(self, metadata: Mapping[str, str]) -> Caller:
        """UNAUTHENTICATED without a bearer token, PERMISSION_DENIED with one that is not accepted."""
        header = metadata.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise UnauthenticatedError("this gateway requires `authorization: Bearer <token>` metadata")
        offered = presented.strip().encode()
        # Compare with every token (no early exit), so timing says nothing about which one matched.
        matches = [token for token in self._tokens if hmac.compare_digest(offered, token.secret.encode())]
        if not matches:
            raise PermissionDeniedError("the bearer token is not accepted")
        return matches[0].caller

    def caller_of(self, context: grpc.ServicerContext) -> Caller:
        """The caller of a gRPC call."""
        return self.caller(dict(context.invocation_metadata()))


def anonymous(context: grpc.ServicerContext) -> Caller:
    """The caller of every call to a gateway without tokens."""
    return ANONYMOUS


Identify = Callable[[grpc.ServicerContext], Caller]


class BearerAuthInterceptor(ApplicationInterceptor):
    """Refuses application calls without an accepted token; health and reflection stay open."""

    def __init__(self, authenticator: Authenticator) -> None:
        """Check calls with `authenticator`."""
        self._authenticator = authenticator

    @contextmanager
    def _checked(self, context: grpc.ServicerContext) -> Iterator[None]:
        self._authenticator.caller_of(context)
        yield

    def wrap(self, behavior: Callable[..., Any], streaming: bool, method: str) -> Callable[..., Any]:
        """Check the token before the call runs."""
        return guarded(behavior, streaming, self._checked)
