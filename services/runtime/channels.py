"""Client channels to stages: round-robin over DNS, limits, keepalive, retries, TLS, tracing.

A target like `dns:///songsmith-diffusion-headless:50053` resolves to every replica behind a headless
Service and spreads calls over them; the servers' max connection age makes clients re-resolve so new
replicas get traffic. Only UNAVAILABLE is retried by gRPC itself, and only for unary calls.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import grpc

from services.runtime.config import MIB
from services.runtime.tracing import traced_channel


@dataclass(frozen=True)
class ChannelSecurity:
    """PEM files for TLS to the stages: the CA that signed them, and our client certificate (mTLS)."""

    ca: str = ""
    cert: str = ""
    key: str = ""


def service_config(retry_services: list[str]) -> str:
    """The gRPC service config: round_robin, and retries on UNAVAILABLE for the named services."""
    config: dict = {"loadBalancingConfig": [{"round_robin": {}}]}
    if retry_services:
        config["methodConfig"] = [
            {
                "name": [{"service": name} for name in retry_services],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    return json.dumps(config)


def create_channel(
    target: str,
    *,
    retry_services: list[str] | None = None,
    security: ChannelSecurity | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    max_message_bytes: int = 4 * MIB,
    keepalive_time_s: float = 30.0,
) -> grpc.Channel:
    """A traced channel to `target` (e.g. `dns:///host:port` or `127.0.0.1:50051`): TLS from the PEM
    files of `security`, or with ready `credentials`, else plaintext."""
    options = [
        ("grpc.service_config", service_config(retry_services or [])),
        ("grpc.enable_retries", 1),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", int(keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]
    if credentials is None and security and security.ca:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=Path(security.ca).read_bytes(),
            private_key=Path(security.key).read_bytes() if security.key else None,
            certificate_chain=Path(security.cert).read_bytes() if security.cert else None,
        )
    if credentials is not None:
        channel = grpc.secure_channel(target, credentials, options=options)
    else:
        channel = grpc.insecure_channel(target, options=options)
    return traced_channel(channel, target=target)
