"""The tokens file: identities and roles, the earlier one-token-per-line format, bad lines."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gateway.auth import Authenticator, Caller, read_tokens
from services.runtime.errors import PermissionDeniedError, UnauthenticatedError


def test_tokens_carry_an_identity_and_a_role(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# team\n\nalice-secret name=alice\nops-secret  role=admin name=ops\nlegacy-secret\n")
    authenticator = Authenticator(read_tokens(path))
    assert authenticator.caller({"authorization": "Bearer alice-secret"}) == Caller("alice")
    assert authenticator.caller({"authorization": "bearer ops-secret"}) == Caller("ops", admin=True)
    legacy = "token-" + hashlib.sha256(b"legacy-secret").hexdigest()[:12]
    assert authenticator.caller({"authorization": "Bearer legacy-secret"}) == Caller(legacy)
    with pytest.raises(UnauthenticatedError):
        authenticator.caller({})
    with pytest.raises(PermissionDeniedError):
        authenticator.caller({"authorization": "Bearer alice"})


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("secret role=root", "role must be one of user, admin"),
        ("secret team=a", "expected `name=IDENTITY` or `role=user|admin`"),
        ("secret admin", "expected `name=IDENTITY` or `role=user|admin`"),
        ("secret name=", "expected `name=IDENTITY` or `role=user|admin`"),
    ],
)
def test_a_bad_line_is_named(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"good\n{line}\n")
    with pytest.raises(ValueError, match=message) as caught:
        read_tokens(path)
    assert f"{path}:2" in str(caught.value)
