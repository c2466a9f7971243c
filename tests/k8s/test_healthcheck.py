"""docker/healthcheck.py (the images' `songsmith-healthcheck`) against real gRPC health servers.

It is the probe of mTLS pods (the kubelet's gRPC probe cannot present a client certificate) and of
the compose services, so it runs here as its own process, over plaintext and over mTLS with
certificates laid out as cert-manager writes them (ca.crt, tls.crt, tls.key).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.helpers import free_port
from tests.k8s.chart import REPO

SCRIPT = REPO / "docker" / "healthcheck.py"
SERVICE = "songsmith.v1.DiffusionService"
SERVER_NAME = "songsmith-diffusion-headless.songs.svc.cluster.local"


@contextmanager
def health_server(
    credentials: grpc.ServerCredentials | None = None,
) -> Iterator[tuple[int, health.HealthServicer]]:
    """A gRPC server on 127.0.0.1 exposing only grpc.health.v1; yields its port and servicer."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = free_port()
    address = f"127.0.0.1:{port}"
    if credentials is None:
        server.add_insecure_port(address)
    else:
        server.add_secure_port(address, credentials)
    server.start()
    try:
        yield port, servicer
    finally:
        server.stop(None)


def probe(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the health check script as the kubelet or compose would."""
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=30, check=False
    )


def openssl(*args: str, cwd: Path) -> None:
    """Run one openssl command in `cwd`, failing the test on error."""
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def issue(cwd: Path, name: str, subject: str, extensions: str) -> None:
    """A P-256 key and a certificate for it signed by the CA in `cwd`."""
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key", cwd=cwd)
    openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=cwd)
    (cwd / f"{name}.ext").write_text(extensions)
    openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        f"{name}.ext",
        "-out",
        f"{name}.crt",
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for the stage's DNS name and a client certificate (for the probe)."""
    folder = tmp_path_factory.mktemp("pki")
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=folder)
    openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-subj",
        "/CN=songsmith-ca",
        "-days",
        "2",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
        "-out",
        "ca.crt",
        cwd=folder,
    )
    issue(
        folder, "server", "/CN=diffusion", f"subjectAltName=DNS:{SERVER_NAME}\nextendedKeyUsage=serverAuth\n"
    )
    issue(folder, "client", "/CN=diffusion", "extendedKeyUsage=clientAuth\n")
    probe_dir = folder / "probe"
    probe_dir.mkdir()
    (probe_dir / "ca.crt").write_bytes((folder / "ca.crt").read_bytes())
    (probe_dir / "tls.crt").write_bytes((folder / "client.crt").read_bytes())
    (probe_dir / "tls.key").write_bytes((folder / "client.key").read_bytes())
    return folder


def test_serving_service_passes() -> None:
    with health_server() as (port, servicer):
        servicer.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
        result = probe(f"--port={port}", f"--service={SERVICE}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{SERVICE}: SERVING"


def test_not_serving_service_fails() -> None:
    with health_server() as (port, servicer):
        servicer.set(SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
        result = probe(f"--port={port}", f"--service={SERVICE}")
    assert result.returncode == 1
    assert result.stdout.strip() == f"{SERVICE}: NOT_SERVING"


def test_unknown_service_fails_with_not_found() -> None:
    with health_server() as (port, _):
        result = probe(f"--port={port}", "--service=songsmith.v1.Nope")
    assert result.returncode == 1
    assert "NOT_FOUND" in result.stderr


def test_nothing_listening_fails_within_the_timeout() -> None:
    result = probe(f"--port={free_port()}", f"--service={SERVICE}", "--timeout=1")
    assert result.returncode == 1
    assert "UNAVAILABLE" in result.stderr or "DEADLINE_EXCEEDED" in result.stderr


def test_mtls_probe_presents_its_certificate_and_checks_the_server_name(pki: Path) -> None:
    credentials = grpc.ssl_server_credentials(
        [((pki / "server.key").read_bytes(), (pki / "server.crt").read_bytes())],
        root_certificates=(pki / "ca.crt").read_bytes(),
        require_client_auth=True,
    )
    tls_dir = f"--tls-dir={pki / 'probe'}"
    with health_server(credentials) as (port, servicer):
        servicer.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
        good = probe(f"--port={port}", f"--service={SERVICE}", tls_dir, f"--server-name={SERVER_NAME}")
        wrong_name = probe(
            f"--port={port}", f"--service={SERVICE}", tls_dir, "--server-name=elsewhere", "--timeout=2"
        )
        plaintext = probe(f"--port={port}", f"--service={SERVICE}", "--timeout=2")
    assert good.returncode == 0, good.stderr
    assert good.stdout.strip() == f"{SERVICE}: SERVING"
    assert wrong_name.returncode == 1
    assert plaintext.returncode == 1


# --- --alive: the liveness probe ----------------------------------------------------------------------


def test_alive_passes_while_the_server_loads_or_drains() -> None:
    with health_server() as (port, servicer):
        servicer.set(SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
        not_ready = probe(f"--port={port}", f"--service={SERVICE}")
        alive = probe(f"--port={port}", f"--service={SERVICE}", "--alive")
        servicer.enter_graceful_shutdown()
        draining = probe(f"--port={port}", f"--service={SERVICE}", "--alive")
    assert not_ready.returncode == 1
    assert alive.returncode == 0, alive.stderr
    assert alive.stdout.strip() == f"{SERVICE}: NOT_SERVING"
    assert draining.returncode == 0, draining.stderr


def test_alive_passes_when_the_server_answers_with_an_error() -> None:
    with health_server() as (port, _):
        result = probe(f"--port={port}", "--service=songsmith.v1.Nope", "--alive")
    assert result.returncode == 0
    assert "NOT_FOUND" in result.stderr


def test_alive_fails_when_nothing_listens() -> None:
    result = probe(f"--port={free_port()}", f"--service={SERVICE}", "--alive", "--timeout=1")
    assert result.returncode == 1
    assert "UNAVAILABLE" in result.stderr or "DEADLINE_EXCEEDED" in result.stderr


def test_alive_fails_when_the_port_is_open_but_nothing_answers() -> None:
    # A wedged process: the kernel accepts the connection, nobody speaks gRPC on it (a TCP probe
    # would pass here).
    with socket.socket() as wedged:
        wedged.bind(("127.0.0.1", 0))
        wedged.listen(8)
        port = wedged.getsockname()[1]
        result = probe(f"--port={port}", f"--service={SERVICE}", "--alive", "--timeout=1")
    assert result.returncode == 1
    assert "DEADLINE_EXCEEDED" in result.stderr or "UNAVAILABLE" in result.stderr
