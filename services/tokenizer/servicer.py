"""The LyricTokenizerService servicer: a thin layer between the proto and the TokenizerEngine."""

from __future__ import annotations

import logging

import grpc
import numpy as np

from services.runtime.calls import call_token
from services.runtime.codec import tensor_to_proto
from services.runtime.logs import job_scope
from services.runtime.slot import ModelSlot
from services.tokenizer.engine import TokenizedLyrics, TokenizerEngine
from songsmith.v1 import tokenizer_pb2, tokenizer_pb2_grpc

log = logging.getLogger(__name__)

_LINE_KINDS = {"tag": tokenizer_pb2.LINE_KIND_TAG, "lyric": tokenizer_pb2.LINE_KIND_LYRIC}


def to_response(result: TokenizedLyrics) -> tokenizer_pb2.TokenizeResponse:
    """The TokenizeResponse for an engine result: int64 token tensor, every kept line, the warnings."""
    response = tokenizer_pb2.TokenizeResponse(
        token_ids=tensor_to_proto(np.asarray(result.tokens, dtype=np.int64)),
        warnings=result.warnings,
    )
    for line in result.lines:
        entry = response.lines.add(
            number=line.number,
            text=line.text,
            kind=_LINE_KINDS[line.kind],
            phonemes=line.phonemes,
            tokens=line.tokens,
        )
        if line.timestamp is not None:
            entry.timestamp_seconds = line.timestamp
    return response


class LyricTokenizerServicer(tokenizer_pb2_grpc.LyricTokenizerServiceServicer):
    """Serves Tokenize from the engine held by the stage's ModelSlot."""

    def __init__(self, slot: ModelSlot) -> None:
        self._slot = slot

    def Tokenize(  # noqa: N802 - gRPC method name
        self, request: tokenizer_pb2.TokenizeRequest, context: grpc.ServicerContext
    ) -> tokenizer_pb2.TokenizeResponse:
        """Tokenize one song's lyrics for the request's family; INVALID_ARGUMENT naming the line when a
        line cannot be read."""
        engine: TokenizerEngine = self._slot.get()
        with job_scope(request.job_id):
            result = engine.tokenize(
                request.lyrics, call_token(context), family=request.family, seconds=request.seconds
            )
            log.info("tokenized %d lines into %d tokens", len(result.lines), len(result.tokens))
        return to_response(result)
