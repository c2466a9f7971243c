"""The LyricTokenizer service through a real StageServer on 127.0.0.1 and a real channel."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from grpc_status import rpc_status

from services.runtime.codec import proto_to_numpy
from services.tokenizer.server import SERVICE_NAME, TokenizerConfig, build_spec
from songsmith.v1 import tokenizer_pb2, tokenizer_pb2_grpc
from tests.helpers import health_status, running_stage, wait_for_health
from tests.tokenizer.conftest import SONG

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def config(**overrides: object) -> TokenizerConfig:
    return TokenizerConfig(port=0, metrics_port=0, drain_delay_s=0, **overrides)


@pytest.fixture(scope="module")
def channel() -> Iterator[grpc.Channel]:
    """A channel to a tokenizer server that was checked NOT_SERVING before its engine loaded."""
    spec_config = config()
    with (
        running_stage(build_spec(spec_config), spec_config, load=False) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as opened,
    ):
        assert health_status(opened, SERVICE_NAME) == NOT_SERVING
        with pytest.raises(grpc.RpcError) as caught:
            tokenizer_pb2_grpc.LyricTokenizerServiceStub(opened).Tokenize(
                tokenizer_pb2.TokenizeRequest(lyrics="hi")
            )
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert server.load()
        wait_for_health(opened, SERVING, SERVICE_NAME)
        yield opened


@pytest.fixture
def stub(channel: grpc.Channel) -> tokenizer_pb2_grpc.LyricTokenizerServiceStub:
    return tokenizer_pb2_grpc.LyricTokenizerServiceStub(channel)


def bad_request(call) -> tuple[grpc.StatusCode, list[tuple[str, str]]]:
    """Run `call`, expect it to fail, and return its code and BadRequest field violations."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    status = rpc_status.from_call(caught.value)
    found: list[tuple[str, str]] = []
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            request = error_details_pb2.BadRequest()
            detail.Unpack(request)
            found += [(v.field, v.description) for v in request.field_violations]
    return caught.value.code(), found


def test_health_is_serving_after_warm_up(channel: grpc.Channel) -> None:
    assert health_status(channel, SERVICE_NAME) == SERVING
    assert health_status(channel) == SERVING


def test_tokenize_a_song(stub: tokenizer_pb2_grpc.LyricTokenizerServiceStub) -> None:
    response = stub.Tokenize(
        tokenizer_pb2.TokenizeRequest(lyrics=SONG["lyrics"], job_id="song-1"), timeout=30
    )
    tokens = proto_to_numpy(response.token_ids, field="token_ids")
    assert tokens.dtype.name == "int64" and tokens.shape == (len(SONG["tokens"]),)
    assert tokens.tolist() == SONG["tokens"]
    assert list(response.warnings) == ["line 9: unknown structure tag [bridge-x] dropped"]
    verse, first_lyric = response.lines[1], response.lines[2]
    assert (verse.number, verse.text, verse.kind, verse.phonemes, list(verse.tokens)) == (
        3,
        "[verse]",
        tokenizer_pb2.LINE_KIND_TAG,
        "",
        [503],
    )
    assert first_lyric.kind == tokenizer_pb2.LINE_KIND_LYRIC
    assert first_lyric.text == "Neon rivers running through the town"
    assert first_lyric.phonemes.startswith("n|iː|")
    assert not first_lyric.HasField("timestamp_seconds")
    flat = [500, 511]
    for line in response.lines:
        flat += [*line.tokens, 511]
    assert flat == SONG["tokens"]


def test_lrc_timestamp_and_crlf(stub: tokenizer_pb2_grpc.LyricTokenizerServiceStub) -> None:
    response = stub.Tokenize(tokenizer_pb2.TokenizeRequest(lyrics="\ufeff[00:07.25]Hello world\r\n"))
    (line,) = response.lines
    assert (line.number, line.text, line.timestamp_seconds) == (1, "Hello world", 7.25)


def test_empty_lyrics_give_an_instrumental(stub: tokenizer_pb2_grpc.LyricTokenizerServiceStub) -> None:
    response = stub.Tokenize(tokenizer_pb2.TokenizeRequest(lyrics=""))
    assert proto_to_numpy(response.token_ids).tolist() == [500, 511, 506, 511, 501, 511]
    assert len(response.lines) == 0


def test_unreadable_line_is_invalid_argument_with_its_number(
    stub: tokenizer_pb2_grpc.LyricTokenizerServiceStub,
) -> None:
    lyrics = "[verse]\nHello world\n\n你好\n\n\n12345\n[end]"
    code, found = bad_request(lambda: stub.Tokenize(tokenizer_pb2.TokenizeRequest(lyrics=lyrics)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    ((field, description),) = found
    assert field == "lyrics"
    assert description.startswith("line 7: only digits")


def test_oversized_lyrics_are_invalid_argument(stub: tokenizer_pb2_grpc.LyricTokenizerServiceStub) -> None:
    code, found = bad_request(lambda: stub.Tokenize(tokenizer_pb2.TokenizeRequest(lyrics="x" * 20_001)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert found == [("lyrics", "20001 characters, more than the 20000 allowed")]


def test_missing_data_is_failed_precondition(tmp_path: Path) -> None:
    spec_config = config(data_dir=str(tmp_path))
    with (
        running_stage(build_spec(spec_config), spec_config) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as opened,
    ):
        with pytest.raises(grpc.RpcError) as caught:
            tokenizer_pb2_grpc.LyricTokenizerServiceStub(opened).Tokenize(
                tokenizer_pb2.TokenizeRequest(lyrics="hi")
            )
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "vocab.json" in caught.value.details()
        assert health_status(opened, SERVICE_NAME) == NOT_SERVING
