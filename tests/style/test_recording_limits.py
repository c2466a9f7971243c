"""The issue's recording against a real StyleEncoder server: refused by its sample rate before it is
decoded, with the limit named, and without the 1.85 GB its decoding used to take (issue 18, item 7)."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import soundfile as sf

from services.runtime.codec import MAX_CHUNK_BYTES
from services.runtime.interceptor import field_violations
from services.style.server import StyleConfig, build_spec
from songsmith.v1 import style_pb2, style_pb2_grpc
from tests.helpers import running_stage
from tests.style.conftest import CHECKPOINT

MIB = 1 << 20


@pytest.fixture(scope="module")
def stub() -> Iterator[style_pb2_grpc.StyleEncoderServiceStub]:
    """A style server with the default limits on the fixture model."""
    config = StyleConfig(port=0, metrics_port=0, drain_delay_s=0, model_dir=str(CHECKPOINT))
    with (
        running_stage(build_spec(config), config) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield style_pb2_grpc.StyleEncoderServiceStub(channel)


def _silence_flac(rate: int, seconds: int) -> bytes:
    buffer = io.BytesIO()
    second = np.zeros(rate, np.int16)
    with sf.SoundFile(buffer, "w", rate, 1, format="FLAC", subtype="PCM_16") as writer:
        for _ in range(seconds):
            writer.write(second)
    return buffer.getvalue()


def _requests(data: bytes) -> Iterator[style_pb2.EmbedAudioRequest]:
    yield style_pb2.EmbedAudioRequest(options=style_pb2.AudioEmbedOptions(crop=style_pb2.AUDIO_CROP_WHOLE))
    for start in range(0, len(data), MAX_CHUNK_BYTES):
        yield style_pb2.EmbedAudioRequest(data=data[start : start + MAX_CHUNK_BYTES])


def test_590_s_of_silence_at_655350_hz_is_refused_before_decoding(stub) -> None:
    data = _silence_flac(655_350, 590)
    assert len(data) < 1.5 * MIB  # under the 32 MiB byte limit and the 600 s duration limit
    tracemalloc.start()  # traces the server's threads too: numpy reports its buffers to it
    try:
        with pytest.raises(grpc.RpcError) as caught:
            stub.EmbedAudio(_requests(data), timeout=60)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    (violation,) = field_violations(caught.value)
    assert violation.field == "data"
    assert "sample rate is 655350 Hz; the sample-rate limit is 192000 Hz" in violation.description
    assert peak < 16 * MIB, f"peak {peak / MIB:.0f} MiB"
