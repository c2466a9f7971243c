"""A second model family for the tests only: "chime", a trivial engine per stage, plugged in with
SONGSMITH_FAMILY_PLUGINS=tests.families.chime. It proves a family joins every stage and the gateway
without a change to any servicer, the pipeline or a proto.

A chime model folder holds `chime.json` ({"pitch": Hz}). Style: a prompt becomes a [4] vector.
Generation: blocks of 5 frames of [n, 2] float32, a progress event before each block. Vocoder: each
frame becomes 800 samples of a sine at 8 kHz, mono; a recording encodes to one frame per 800
samples (its mean level and peak), which generation continues. Everything is deterministic in the seed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from services.diffusion.engine import GeneratedBlock, GenerationProgress, GenerationRequest
from services.diffusion.families import GENERATION_FAMILIES
from services.runtime.cancellation import CancellationToken
from services.runtime.errors import InvalidArgumentError
from services.runtime.families import Family
from services.runtime.model_info import REFERENCE_AUDIO, STYLE_TEXT, ModelInfo, model_name, weights_revision
from services.runtime.recording import RecordingLimits, read_recording
from services.style.engine import Embedding, StyleLimits
from services.style.families import STYLE_FAMILIES
from services.vocoder.engine import PcmPiece
from services.vocoder.families import VOCODER_FAMILIES

CONFIG = "chime.json"
SAMPLE_RATE = 8000
SAMPLES_PER_FRAME = 800
BLOCK_FRAMES = 5
DEFAULT_FRAMES = 20
FRAME_RATE = SAMPLE_RATE / SAMPLES_PER_FRAME


def write_model(folder: Path, pitch: float = 440.0) -> Path:
    """A chime model folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG).write_text(json.dumps({"pitch": pitch}))
    return folder


def _info(model_dir: Path, name: str, **fields) -> ModelInfo:
    return ModelInfo(
        name=model_name(model_dir, name),
        family="chime",
        revision=weights_revision([model_dir / CONFIG]),
        families=("chime",),
        **fields,
    )


class ChimeStyle:
    """A prompt's [4] vector: its length, vowels, spaces and a checksum, scaled down."""

    def __init__(self, model_dir: Path, settings) -> None:
        self.info = _info(model_dir, settings.name, inputs=(STYLE_TEXT,))
        self.limits = StyleLimits()

    def embed_text(self, prompt: str) -> Embedding:
        if not prompt:
            raise InvalidArgumentError("prompt", "the prompt is empty")
        counts = [
            len(prompt),
            sum(c in "aeiou" for c in prompt),
            prompt.count(" "),
            sum(map(ord, prompt)) % 97,
        ]
        return Embedding(np.array(counts, np.float32) / 100.0)

    def embed_audio(self, data: bytes, crop="whole", seed: int = 0, token=None) -> Embedding:
        raise InvalidArgumentError("data", "chime models take no recording")

    def warm_up(self) -> None:
        self.embed_text("warm")


class ChimeGeneration:
    """Blocks of [5, 2] frames: the style's mean and the seed's noise, a progress event before each."""

    def __init__(self, model_dir: Path, settings) -> None:
        self.info = _info(
            model_dir,
            settings.name,
            frame_rate=SAMPLE_RATE / SAMPLES_PER_FRAME,
            inputs=(STYLE_TEXT, REFERENCE_AUDIO),
        )

    def generate(self, request: GenerationRequest, token: CancellationToken | None = None) -> Iterator:
        if request.style is None or request.style.shape != (4,):
            raise InvalidArgumentError("style", "must be a chime style vector [4]")
        frames = request.max_frames or DEFAULT_FRAMES
        blocks = -(-frames // BLOCK_FRAMES)
        noise = np.random.default_rng(request.seed).standard_normal((frames, 2)).astype(np.float32)
        song = noise * 0.1 + float(request.style.mean())
        if request.reference is not None:
            kept = min(len(song), len(request.reference))
            song[:kept] = request.reference[:kept]
        return self._blocks(song, blocks, len(request.prefix), token)

    @staticmethod
    def _blocks(song: np.ndarray, blocks: int, first: int, token) -> Iterator:
        for index in range(first, blocks):
            if token is not None:
                token.check()
            yield GenerationProgress(index, blocks)
            end = min(len(song), (index + 1) * BLOCK_FRAMES)
            yield GeneratedBlock(index, song[index * BLOCK_FRAMES : end], index == blocks - 1, blocks, end)

    def warm_up(self) -> None:
        list(self.generate(GenerationRequest(style=np.zeros(4, np.float32), max_frames=1)))


class ChimeDecoder:
    """Each frame decodes alone, so every frame's samples are final the moment it arrives."""

    def __init__(self, pitch: float, token) -> None:
        self.pitch = pitch
        self.emitted_samples = 0
        self._token = token

    def push(self, frames: np.ndarray) -> list[PcmPiece]:
        if frames.ndim != 2 or frames.shape[1] != 2 or frames.dtype != np.float32:
            raise InvalidArgumentError(
                "frames", f"expected float32 [n, 2], got {frames.dtype} {list(frames.shape)}"
            )
        if not len(frames):
            return []
        if self._token is not None:
            self._token.check()
        t = (
            np.arange(self.emitted_samples, self.emitted_samples + len(frames) * SAMPLES_PER_FRAME)
            / SAMPLE_RATE
        )
        level = np.repeat(np.tanh(frames.mean(axis=1)), SAMPLES_PER_FRAME)
        piece = PcmPiece(
            self.emitted_samples, (0.5 * level * np.sin(2 * np.pi * self.pitch * t)).astype(np.float32)[None]
        )
        self.emitted_samples += piece.samples.shape[1]
        return [piece]

    def finish(self) -> list[PcmPiece]:
        return []


class ChimeVocoder:
    """A sine at the model's pitch, its level following the frames."""

    def __init__(self, model_dir: Path, settings) -> None:
        self.pitch = float(json.loads((model_dir / CONFIG).read_text())["pitch"])
        self.info = _info(
            model_dir,
            settings.name,
            sample_rate=SAMPLE_RATE,
            frame_rate=SAMPLE_RATE / SAMPLES_PER_FRAME,
            channels=1,
        )

    def stream(self, token=None) -> ChimeDecoder:
        return ChimeDecoder(self.pitch, token)

    def decode(self, frames: np.ndarray, token=None, options=None) -> np.ndarray:
        decoder = self.stream(token)
        pieces = decoder.push(frames)
        return pieces[0].samples if pieces else np.zeros((1, 0), np.float32)

    def encode_recording(self, data: bytes, token=None) -> np.ndarray:
        audio = read_recording(data, RecordingLimits(max_bytes=1 << 20, max_seconds=10.0), SAMPLE_RATE)
        frames = audio[0, : audio.shape[1] // SAMPLES_PER_FRAME * SAMPLES_PER_FRAME]
        frames = np.abs(frames.reshape(-1, SAMPLES_PER_FRAME))
        return np.stack([frames.mean(axis=1), frames.max(axis=1)], axis=1).astype(np.float32)

    def warm_up(self) -> None:
        self.decode(np.zeros((1, 2), np.float32))


def _detect(model_dir: Path) -> bool:
    return (model_dir / CONFIG).is_file()


GENERATION_FAMILIES.register(
    Family("chime", _detect, ChimeGeneration, CONFIG, companions={"style": ".", "vocoder": "."})
)
STYLE_FAMILIES.register(Family("chime", _detect, ChimeStyle, CONFIG))
VOCODER_FAMILIES.register(Family("chime", _detect, ChimeVocoder, CONFIG))
