"""The remote vocoder client against a real vocoder server: how a stopped decode call reports itself."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gateway.remote_stages import RemoteVocoder
from services.runtime.cancellation import CancellationToken
from services.runtime.channels import create_channel
from services.runtime.errors import CancelledError
from services.vocoder.server import VocoderConfig, build_spec
from tests.helpers import running_stage


@pytest.fixture(scope="module")
def vocoder(demo_models: Path) -> Iterator[RemoteVocoder]:
    """A remote vocoder client of a loaded demo vocoder server."""
    config = VocoderConfig(port=0, drain_delay_s=0, model_dir=str(demo_models / "diffrhythm2"))
    with running_stage(build_spec(config), config) as server:
        address = f"127.0.0.1:{server.port}"
        remote = RemoteVocoder(address, create_channel(address))
        yield remote
        remote.close()


def _endless_blocks() -> Iterator[np.ndarray]:
    rng = np.random.default_rng(5)
    while True:
        yield rng.standard_normal((10, 64)).astype(np.float32)


def test_cancelled_decode_raises_cancelled_even_after_the_request_stream_is_closed(
    vocoder: RemoteVocoder,
) -> None:
    """gRPC closes the request generator when the call ends; that GeneratorExit is not the song's
    error (it once escaped the job runner and left the job RUNNING for ever)."""
    token = CancellationToken()
    pieces = vocoder.decode(_endless_blocks(), "cancel-decode", token)
    next(pieces)
    token.cancel("stop")
    time.sleep(1.0)
    with pytest.raises(CancelledError):
        for _ in pieces:
            pass
