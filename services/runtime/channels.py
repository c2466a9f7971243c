"""Client channels to stages: round-robin over DNS, limits, keepalive, bounded reconnects, TLS, tracing.

A target like `dns:///songsmith-diffusion-headless:50053` resolves to every replica behind a headless
Service and spreads calls over them; the servers' max connection age makes clients re-resolve so new
replicas get traffic.

A channel whose stage went away keeps trying to reconnect, waiting at most `RECONNECT_MAX_BACKOFF_S`
between tries (gRPC's default grows to two minutes), so a stage that is back is used within about
a second. gRPC itself retries nothing: the gateway's one retry policy (`gateway.pipeline.RetryPolicy`)
decides how every stage call is retried, and its calls wait for a connection (`wait_for_ready`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import grpc

from services.runtime.config import MIB
from services.runtime.tracing import traced_channel

# Reconnect backoff after a lost connection: first try after 0.1 s, growing to at most 1 s (each
# attempt still gets gRPC's 20 s minimum to connect, so a slow TLS handshake is not cut short).
RECONNECT_INITIAL_BACKOFF_S = 0.1
RECONNECT_MAX_BACKOFF_S = 1.0


@dataclass(frozen=True)
class ChannelSecurity:
    """PEM files for TLS to the stages: the CA that signed them, and our client certificate (mTLS)."""

    ca: str = ""
    cert: str = ""
    key: str = ""


def service_config() -> str:
    """The gRPC service config: round_robin over every address the target resolves to."""
    return json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


def channel_options(max_message_bytes: int, keepalive_time_s: float) -> list[tuple[str, int | str]]:
    """Channel arguments: balancing, message limits, keepalive and the bounded reconnect backoff."""
    return [
        ("grpc.service_config", service_config()),
        ("grpc.enable_retries", 0),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", int(keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.initial_reconnect_backoff_ms", int(RECONNECT_INITIAL_BACKOFF_S * 1000)),
        ("grpc.max_reconnect_backoff_ms", int(RECONNECT_MAX_BACKOFF_S * 1000)),
    ]


def create_channel(
    target: str,
    *,
    security: ChannelSecurity | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    max_message_bytes: int = 4 * MIB,
    keepalive_time_s: float = 30.0,
) -> grpc.Channel:
    """A traced channel to `target` (e.g. `dns:///host:port` or `127.0.0.1:50051`): TLS from the PEM
    files of `security`, or with ready `credentials`, else plaintext."""
    options = channel_options(max_message_bytes, keepalive_time_s)
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
