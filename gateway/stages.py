"""The stage clients the pipeline drives, whatever the transport and whatever the model family.

A routed model is a set of stage clients (`gateway.router`): the lyric tokenizer and the style
encoder when its model reads lyrics or a style, the generation stage and the vocoder always. The
chart stage, when the gateway has one, serves the songs of every model. Each client has two
implementations: `gateway.local_stages` (engines in this process: the embedded
default) and `gateway.remote_stages` (gRPC to stage services). Both raise the runtime's typed errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from services.diffusion.engine import GenerationProgress, GenerationRequest
from services.runtime.cancellation import CancellationToken
from services.runtime.model_info import ModelInfo
from services.style.engine import CropMode
from services.vocoder.engine import PcmPiece
from songsmith.v1 import chart_pb2

IN_PROCESS = "in-process"


@dataclass(frozen=True)
class Block:
    """One finished block of a song's frames ([n, channels]), and the model revision that made it.

    `candidate` says which of several songs sampled together it belongs to (0 for a single song);
    `index`, `final`, `max_blocks` and `frames_done` count over the whole stream (see
    `services.diffusion.engine.GeneratedBlock`)."""

    index: int
    frames: np.ndarray
    final: bool
    max_blocks: int
    frames_done: int
    revision: str
    candidate: int = 0


@dataclass(frozen=True)
class SongGeneration:
    """What the generation stage gets for one song: the engine's request (without options), the
    request's family options as sent (`options_field` names the oneof arm; None: defaults), and
    the revision that made `request.prefix` (a stage with another revision refuses to continue it)."""

    request: GenerationRequest
    options_field: str | None = None
    options: Any = None
    prefix_revision: str = ""


GenerationEvent = Block | GenerationProgress


class StageClient(Protocol):
    """What every stage client offers besides its own calls."""

    target: str

    def model_info(self, token: CancellationToken) -> ModelInfo:
        """What the stage hosts (GetModelInfo, or the engine's own info in process)."""
        ...

    def close(self) -> None:
        """Release the channel or the engine."""
        ...


class TokenizerClient(StageClient, Protocol):
    """The lyric tokenizer."""

    def tokenize(
        self, lyrics: str, family: str, seconds: float, job_id: str, token: CancellationToken
    ) -> np.ndarray:
        """Token ids, int64, as `family`'s model reads them."""
        ...


class StyleClient(StageClient, Protocol):
    """The style encoder."""

    def embed_text(self, prompt: str, job_id: str, token: CancellationToken) -> np.ndarray:
        """The conditioning for a prompt."""
        ...

    def embed_audio(self, data: bytes, crop: CropMode, job_id: str, token: CancellationToken) -> np.ndarray:
        """The conditioning for an encoded recording."""
        ...


class GenerationClient(StageClient, Protocol):
    """The generation stage."""

    def generate(self, song: SongGeneration, token: CancellationToken) -> Iterator[GenerationEvent]:
        """The song's blocks after the prefix as each is final, and progress between them."""
        ...


class VocoderClient(StageClient, Protocol):
    """The vocoder."""

    def decode(
        self, blocks: Iterable[np.ndarray], job_id: str, token: CancellationToken, start_sample: int = 0
    ) -> Iterator[PcmPiece]:
        """PCM [channels, n] as it becomes final while the blocks' frames arrive, from sample
        `start_sample` on: a decode resumed after a lost one sends the song's frames again from
        block 0 and gets only the samples it does not have yet."""
        ...

    def encode(self, data: bytes, job_id: str, token: CancellationToken) -> np.ndarray:
        """The frames [n, channels] of an encoded recording, for the generation stage to edit or
        continue (FAILED_PRECONDITION for a decoder without an encoder)."""
        ...


class ChartClient(StageClient, Protocol):
    """The chart stage."""

    def make_charts(
        self, options: chart_pb2.ChartOptions, audio: bytes, token: CancellationToken
    ) -> Iterator[chart_pb2.GenerateChartsResponse]:
        """Charts for a song's encoded file: a progress response after every sampler step, then one
        response per chart, exactly as ChartService.GenerateCharts answers."""
        ...
