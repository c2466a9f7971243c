"""Stage clients over engines inside this process: no servers, no sockets (the embedded default)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from gateway.stages import IN_PROCESS, Block, GenerationEvent, SongGeneration
from services.chart.engine import ChartEngine, ChartSettings, SongAudio
from services.chart.families import CHART_FAMILIES
from services.chart.servicer import chart_request, response
from services.diffusion.engine import (
    GeneratedBlock,
    GenerationEngine,
    GenerationSettings,
    check_prefix_revision,
)
from services.diffusion.families import GENERATION_FAMILIES
from services.runtime.cancellation import CancellationToken
from services.runtime.model_info import ModelInfo
from services.style.engine import CropMode, StyleEngine, StyleSettings
from services.style.families import STYLE_FAMILIES
from services.tokenizer.engine import TokenizerEngine
from services.vocoder.engine import PcmPiece, VocoderEngine, VocoderSettings, from_sample
from services.vocoder.families import VOCODER_FAMILIES
from songsmith.v1 import chart_pb2


class LocalTokenizer:
    """The lyric tokenizer engine (every lyric family's front end over one G2P)."""

    target = IN_PROCESS

    def __init__(self) -> None:
        """Load and warm up the engine."""
        self.engine = TokenizerEngine.load()

    def model_info(self, token: CancellationToken) -> ModelInfo:
        """What the engine serves."""
        return self.engine.info

    def tokenize(
        self, lyrics: str, family: str, seconds: float, job_id: str, token: CancellationToken
    ) -> np.ndarray:
        """Token ids, int64."""
        result = self.engine.tokenize(lyrics, token, family=family, seconds=seconds)
        return np.asarray(result.tokens, dtype=np.int64)

    def close(self) -> None:
        """Nothing to release: the engine goes with the process."""


class LocalStyle:
    """A style engine of any family, loaded from its model folder."""

    target = IN_PROCESS

    def __init__(self, model_dir: Path, device: str = "cpu") -> None:
        """Load the engine (FailedPreconditionError when the folder holds no style model)."""
        self.engine: StyleEngine = STYLE_FAMILIES.load(model_dir, StyleSettings(device))

    def model_info(self, token: CancellationToken) -> ModelInfo:
        """What the engine hosts."""
        return self.engine.info

    def embed_text(self, prompt: str, job_id: str, token: CancellationToken) -> np.ndarray:
        """The conditioning for a prompt."""
        return self.engine.embed_text(prompt).vector

    def embed_audio(self, data: bytes, crop: CropMode, job_id: str, token: CancellationToken) -> np.ndarray:
        """The conditioning for an encoded recording."""
        return self.engine.embed_audio(data, crop=crop, token=token).vector

    def close(self) -> None:
        """Nothing to release: the engine goes with the process."""


class LocalGeneration:
    """A generation engine of any family, loaded from its model folder."""

    target = IN_PROCESS

    def __init__(self, model_dir: Path, device: str = "cpu") -> None:
        """Load and warm up the engine (FailedPreconditionError when the folder holds no model)."""
        self.engine: GenerationEngine = GENERATION_FAMILIES.load(model_dir, GenerationSettings(device))
        self.engine.warm_up()

    def model_info(self, token: CancellationToken) -> ModelInfo:
        """What the engine hosts."""
        return self.engine.info

    def generate(self, song: SongGeneration, token: CancellationToken) -> Iterator[GenerationEvent]:
        """The song's blocks after the prefix and progress between them, straight from the engine."""
        info = self.engine.info
        options = (
            GENERATION_FAMILIES.parse_options(info.family, song.options_field, song.options)
            if song.options_field
            else None
        )
        check_prefix_revision(info, song.request.prefix, song.prefix_revision)
        request = replace(song.request, options=options)
        for event in self.engine.generate(request, token):
            if isinstance(event, GeneratedBlock):
                yield Block(
                    event.index,
                    event.frames,
                    event.final,
                    event.max_blocks,
                    event.frames_done,
                    info.revision,
                    event.candidate,
                )
            else:
                yield event

    def close(self) -> None:
        """Nothing to release: the engine goes with the process."""


class LocalVocoder:
    """A decoder of any family, loaded from its model folder."""

    target = IN_PROCESS

    def __init__(self, model_dir: Path, device: str = "cpu") -> None:
        """Load and warm up the engine (FailedPreconditionError when the folder holds no decoder)."""
        self.engine: VocoderEngine = VOCODER_FAMILIES.load(model_dir, VocoderSettings(device))
        self.engine.warm_up()

    def model_info(self, token: CancellationToken) -> ModelInfo:
        """What the engine hosts."""
        return self.engine.info

    def decode(
        self, blocks: Iterable[np.ndarray], job_id: str, token: CancellationToken, start_sample: int = 0
    ) -> Iterator[PcmPiece]:
        """Streaming decode: PCM from `start_sample` on, as soon as it can no longer change."""
        decoder = self.engine.stream(token)
        if start_sample:
            decoder.skip_to(start_sample)
        for frames in blocks:
            yield from from_sample(decoder.push(frames), start_sample)
        yield from from_sample(decoder.finish(), start_sample)

    def encode(self, data: bytes, job_id: str, token: CancellationToken) -> np.ndarray:
        """The engine's encoding of the recording."""
        return self.engine.encode_recording(data, token)

    def close(self) -> None:
        """Nothing to release: the engine goes with the process."""


class LocalChart:
    """A chart engine of any family, loaded from its model folder."""

    target = IN_PROCESS

    def __init__(self, model_dir: Path, device: str = "cpu") -> None:
        """Load and warm up the engine (FailedPreconditionError when the folder holds no chart model)."""
        self.engine: ChartEngine = CHART_FAMILIES.load(model_dir, ChartSettings(device))
        self.engine.warm_up()

    def model_info(self, token: CancellationToken) -> ModelInfo:
        """What the engine hosts."""
        return self.engine.info

    def make_charts(
        self, options: chart_pb2.ChartOptions, audio: bytes, token: CancellationToken
    ) -> Iterator[chart_pb2.GenerateChartsResponse]:
        """The stage's answer, made here: the same request conversion and events as its servicer."""
        for event in self.engine.generate(chart_request(options, SongAudio(encoded=audio)), token):
            yield response(event)

    def close(self) -> None:
        """Nothing to release: the engine goes with the process."""
