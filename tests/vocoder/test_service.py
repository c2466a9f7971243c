"""The Vocoder service through a real StageServer on 127.0.0.1 and a real channel."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import soundfile
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from grpc_status import rpc_status

from services.runtime.codec import MAX_CHUNK_BYTES, proto_to_numpy, tensor_to_proto
from services.vocoder.diffrhythm2.engine import VocoderEngine
from services.vocoder.engine import PcmPiece
from services.vocoder.server import SERVICE_NAME, VocoderConfig, build_spec
from services.vocoder.servicer import frame_chunks, pcm_chunks
from songsmith.v1 import tensor_pb2, vocoder_pb2, vocoder_pb2_grpc
from tests.helpers import health_status, running_stage

CAP = 60
SONG_FRAMES = 37


@pytest.fixture(scope="module")
def stub(fixture_dir: Path) -> Iterator[vocoder_pb2_grpc.VocoderServiceStub]:
    """A loaded vocoder server over the fixture decoder (frame cap 60) and a stub for it."""
    config = VocoderConfig(port=0, drain_delay_s=0, model_dir=str(fixture_dir), max_frames_cap=CAP)
    with running_stage(build_spec(config), config) as server:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        assert health_status(channel, SERVICE_NAME) == health_pb2.HealthCheckResponse.SERVING
        yield vocoder_pb2_grpc.VocoderServiceStub(channel)
        channel.close()


@pytest.fixture(scope="module")
def song(engine: VocoderEngine) -> tuple[np.ndarray, np.ndarray]:
    """A 37-frame song's latents and its one-shot decode."""
    latents = np.random.default_rng(37).standard_normal((SONG_FRAMES, 64)).astype(np.float32)
    return latents, engine.decode(latents)


def _requests(latents: np.ndarray, sizes: list[int], mark_final: bool) -> Iterator[vocoder_pb2.DecodeRequest]:
    begin = 0
    for index, size in enumerate(sizes):
        block = latents[begin : begin + size]
        begin += size
        final = mark_final and index == len(sizes) - 1
        yield vocoder_pb2.DecodeRequest(
            job_id="j1", block_index=index, frames=tensor_to_proto(block), final=final
        )


def _audio(chunks: list[vocoder_pb2.DecodeResponse]) -> np.ndarray:
    offset = 0
    for chunk in chunks:
        assert chunk.sample_offset == offset and chunk.sample_rate == 48000
        assert len(chunk.samples.data) <= MAX_CHUNK_BYTES and chunk.samples.shape[0] == 1
        offset += chunk.samples.shape[1]
    assert [c.final for c in chunks] == [False] * (len(chunks) - 1) + [True]
    return np.concatenate([proto_to_numpy(c.samples, "samples") for c in chunks], axis=1)


@pytest.mark.parametrize(
    ("sizes", "mark_final"),
    [([10, 10, 10, 7], True), ([3, 0, 21, 13], False), ([SONG_FRAMES], True)],
    ids=["blocks_of_ten_with_final", "uneven_then_close", "all_at_once"],
)
def test_stream_equals_one_shot_decode(stub, song, sizes, mark_final):
    latents, expected = song
    chunks = list(stub.Decode(_requests(latents, sizes, mark_final), timeout=120))
    audio = _audio(chunks)
    assert audio.shape == expected.shape
    assert np.abs(audio - expected).max() <= 1e-6


def test_pcm_arrives_while_the_request_stream_is_still_open(stub, song):
    latents, expected = song
    first_chunk = threading.Event()

    def requests() -> Iterator[vocoder_pb2.DecodeRequest]:
        yield vocoder_pb2.DecodeRequest(block_index=0, frames=tensor_to_proto(latents[:10]))
        yield vocoder_pb2.DecodeRequest(block_index=1, frames=tensor_to_proto(latents[10:20]))
        assert first_chunk.wait(timeout=60), "no PCM before the song ended"
        yield vocoder_pb2.DecodeRequest(block_index=2, frames=tensor_to_proto(latents[20:]), final=True)

    chunks = []
    for chunk in stub.Decode(requests(), timeout=120):
        chunks.append(chunk)
        first_chunk.set()
    assert chunks[0].sample_offset == 0 and list(chunks[0].samples.shape) == [1, 3 * 9600]
    assert np.abs(_audio(chunks) - expected).max() <= 1e-6


def test_empty_song_gets_one_empty_final_chunk(stub):
    chunks = list(stub.Decode(iter([vocoder_pb2.DecodeRequest(final=True)]), timeout=30))
    assert len(chunks) == 1 and chunks[0].final and chunks[0].samples.shape == [1, 0]


@pytest.mark.parametrize("channels", [1, 2])
def test_large_pieces_are_split_into_chunks_of_at_most_one_mib(channels: int):
    samples = np.arange(600_000 * channels, dtype=np.float32).reshape(channels, 600_000)
    chunks = list(pcm_chunks([PcmPiece(96_000, samples)], 48000))
    per_chunk = 262_144 // channels
    assert [c.sample_offset for c in chunks] == [96_000 + i * per_chunk for i in range(len(chunks))]
    assert all(len(c.samples.data) <= MAX_CHUNK_BYTES for c in chunks)
    np.testing.assert_array_equal(
        np.concatenate([proto_to_numpy(c.samples) for c in chunks], axis=1), samples
    )


def _violations(error: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(error)
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            request = error_details_pb2.BadRequest()
            detail.Unpack(request)
            fields += [v.field for v in request.field_violations]
    return fields


def _message(latents: np.ndarray, index: int = 0) -> vocoder_pb2.DecodeRequest:
    return vocoder_pb2.DecodeRequest(block_index=index, frames=tensor_to_proto(latents))


def _nan_block() -> np.ndarray:
    block = np.zeros((5, 64), np.float32)
    block[1, 2] = np.nan
    return block


def _inf_block() -> np.ndarray:
    block = np.zeros((5, 64), np.float32)
    block[4, 0] = -np.inf
    return block


INVALID_CASES = {
    "wrong_channel_count": ([_message(np.zeros((5, 63), np.float32))], "frames", "got [5, 63]"),
    "nan_values": ([_message(_nan_block())], "frames", "NaN or infinite"),
    "infinite_values": ([_message(_inf_block())], "frames", "NaN or infinite"),
    "too_many_frames": (
        [_message(np.zeros((40, 64), np.float32)), _message(np.zeros((21, 64), np.float32), 1)],
        "frames",
        "61 frames, more than the cap of 60",
    ),
    "block_index_out_of_order": (
        [_message(np.zeros((2, 64), np.float32)), _message(np.zeros((2, 64), np.float32), 2)],
        "block_index",
        "expected 1, got 2",
    ),
    "first_block_not_zero": ([_message(np.zeros((2, 64), np.float32), 1)], "block_index", "expected 0"),
    "float16_latents": ([_message(np.zeros((2, 64), np.float16))], "frames", "must be float32"),
    "malformed_tensor": (
        [
            vocoder_pb2.DecodeRequest(
                frames=tensor_pb2.Tensor(dtype=tensor_pb2.DATA_TYPE_FLOAT32, shape=[2, 64], data=b"\0" * 12)
            )
        ],
        "frames",
        "needs 512 bytes",
    ),
}


@pytest.mark.parametrize("case", list(INVALID_CASES))
def test_bad_input_is_invalid_argument_naming_the_field(stub, case):
    messages, field, text = INVALID_CASES[case]
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Decode(iter(messages), timeout=60))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _violations(caught.value) == [field]
    assert text in caught.value.details()


def test_no_model_is_failed_precondition(tmp_path: Path):
    config = VocoderConfig(port=0, drain_delay_s=0, model_dir=str(tmp_path))
    with running_stage(build_spec(config), config) as server:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        assert health_status(channel, SERVICE_NAME) == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.RpcError) as caught:
            list(
                vocoder_pb2_grpc.VocoderServiceStub(channel).Decode(
                    iter([vocoder_pb2.DecodeRequest(final=True)])
                )
            )
        channel.close()
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no vocoder model" in caught.value.details() and "decoder.json" in caught.value.details()


def _wav(seconds: float, rate: int = 22050) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.full(int(rate * seconds), 0.25, np.float32), rate, format="WAV")
    return buffer.getvalue()


def _upload(data: bytes) -> Iterator[vocoder_pb2.EncodeRequest]:
    yield vocoder_pb2.EncodeRequest(options=vocoder_pb2.EncodeOptions(job_id="encode-1"))
    for start in range(0, len(data), MAX_CHUNK_BYTES):
        yield vocoder_pb2.EncodeRequest(data=data[start : start + MAX_CHUNK_BYTES])


def test_encode_on_a_decoder_without_an_encoder_is_failed_precondition(stub):
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Encode(_upload(_wav(1.0)), timeout=60))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "has no encoder" in caught.value.details()


@pytest.mark.parametrize(
    ("messages", "field"),
    [
        ([vocoder_pb2.EncodeRequest(data=b"RIFF")], "options"),
        ([], "options"),
        (
            [*_upload(b"RIFF"), vocoder_pb2.EncodeRequest(options=vocoder_pb2.EncodeOptions())],
            "options",
        ),
    ],
    ids=["data-first", "empty-stream", "options-twice"],
)
def test_encode_uploads_out_of_protocol_are_invalid_argument(stub, messages, field):
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Encode(iter(messages), timeout=60))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _violations(caught.value) == [field]


def test_encoded_frames_come_back_in_pieces_of_at_most_one_mib():
    frames = np.arange(3 * (1 << 20) // 8, dtype=np.int64).reshape(-1, 4)
    chunks = list(frame_chunks(frames))
    assert len(chunks) == 3 and all(len(c.frames.data) <= MAX_CHUNK_BYTES for c in chunks)
    np.testing.assert_array_equal(np.concatenate([proto_to_numpy(c.frames) for c in chunks]), frames)
