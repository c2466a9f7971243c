#!/usr/bin/env python3
"""Container health probe for Songsmith services: one grpc.health.v1 Check, exit 0 when SERVING.

The kubelet's native gRPC probe speaks plaintext only, so pods whose port requires mTLS, and the
compose healthchecks, run this instead (installed in the images as `songsmith-healthcheck`).
With --alive it is the liveness probe: it passes whenever the server answers, so a server that is
loading its model or draining (NOT_SERVING: not ready) is still alive and is not restarted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The probe's flags."""
    parser = argparse.ArgumentParser(prog="songsmith-healthcheck", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address of the server (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="its gRPC port")
    parser.add_argument("--service", default="", help="health service name; empty asks for the whole server")
    parser.add_argument("--timeout", type=float, default=4.0, help="seconds before the check fails")
    parser.add_argument(
        "--tls-dir",
        default="",
        help="folder with ca.crt, tls.crt and tls.key: dial with mTLS (cert-manager's secret layout)",
    )
    parser.add_argument("--server-name", default="", help="name the server certificate must carry (with TLS)")
    parser.add_argument(
        "--alive",
        action="store_true",
        help="pass when the server answers at all, whatever the status (liveness, not readiness)",
    )
    return parser.parse_args(argv)


def open_channel(args: argparse.Namespace) -> grpc.Channel:
    """A plaintext channel, or an mTLS one presenting the certificate in --tls-dir."""
    target = f"{args.host}:{args.port}"
    if not args.tls_dir:
        return grpc.insecure_channel(target)
    folder = Path(args.tls_dir)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(folder / "ca.crt").read_bytes(),
        private_key=(folder / "tls.key").read_bytes(),
        certificate_chain=(folder / "tls.crt").read_bytes(),
    )
    options = [("grpc.ssl_target_name_override", args.server_name)] if args.server_name else []
    return grpc.secure_channel(target, credentials, options=options)


# Errors that mean no answer came back in time: the server is gone, wedged or not listening.
NO_ANSWER = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def main(argv: list[str] | None = None) -> int:
    """Check once; print the outcome; 0 when SERVING (with --alive: when the server answered), 1 otherwise."""
    args = parse_args(argv)
    name = args.service or "server"
    with open_channel(args) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout)
        except grpc.RpcError as error:
            print(f"{name}: {error.code().name}: {error.details()}", file=sys.stderr)
            return 0 if args.alive and error.code() not in NO_ANSWER else 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{name}: {status}")
    return 0 if args.alive or reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
