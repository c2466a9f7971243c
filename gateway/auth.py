"""Bearer-token authentication of gateway clients (`authorization: Bearer <token>` metadata)."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

from services.runtime.errors import PermissionDeniedError, UnauthenticatedError
from services.runtime.handlers import ApplicationInterceptor, guarded


def read_tokens(path: str | Path) -> list[str]:
    """Accepted tokens from a file: one per line, blank lines and `#` comments ignored."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def check_bearer(metadata: dict[str, str], tokens: list[str]) -> None:
    """UNAUTHENTICATED without a bearer token, PERMISSION_DENIED with one that is not accepted."""
    header = metadata.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise UnauthenticatedError("this gateway requires `authorization: Bearer <token>` metadata")
    if not any(hmac.compare_digest(presented.strip().encode(), token.encode()) for token in tokens):
        raise PermissionDeniedError("the bearer token is not accepted")


class BearerAuthInterceptor(ApplicationInterceptor):
    """Refuses application calls without an accepted token; health and reflection stay open."""

    def __init__(self, tokens: list[str]) -> None:
        """Accept exactly `tokens` (at least one)."""
        if not tokens:
            raise ValueError("at least one token is required")
        self._tokens = tokens

    @contextmanager
    def _checked(self, context: grpc.ServicerContext) -> Iterator[None]:
        check_bearer(dict(context.invocation_metadata()), self._tokens)
        yield

    def wrap(self, behavior: Callable[..., Any], streaming: bool, method: str) -> Callable[..., Any]:
        """Check the token before the call runs."""
        return guarded(behavior, streaming, self._checked)
