"""Test certificates made with the openssl command: a CA, a server certificate and a client one."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


def openssl(*args: str, cwd: Path) -> None:
    """Run one openssl command in `cwd`, failing the test on error."""
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _issue(cwd: Path, name: str, subject: str, extensions: str) -> None:
    """A P-256 key and a certificate for it signed by the CA in `cwd`."""
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key", cwd=cwd)
    openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=cwd)
    (cwd / f"{name}.ext").write_text(extensions)
    openssl(
        *("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"),
        *("-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt"),
        cwd=cwd,
    )


@dataclass(frozen=True)
class Pki:
    """PEM files in one folder: ca.crt, server.crt/.key (for localhost and 127.0.0.1), client.crt/.key."""

    folder: Path

    def path(self, name: str) -> str:
        """The path of one file, e.g. `ca.crt`."""
        return str(self.folder / name)

    def read(self, name: str) -> bytes:
        """The bytes of one file."""
        return (self.folder / name).read_bytes()


def make_pki(folder: Path) -> Pki:
    """A CA that signed a server certificate for localhost / 127.0.0.1 and a client certificate."""
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=folder)
    openssl(
        *("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=songsmith-test-ca", "-days", "2"),
        *("-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"),
        *("-out", "ca.crt"),
        cwd=folder,
    )
    server = "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
    _issue(folder, "server", "/CN=localhost", server)
    _issue(folder, "client", "/CN=songsmith-client", "extendedKeyUsage=clientAuth\n")
    return Pki(folder)
