"""The four stages as engines inside this process: no servers, no sockets (the embedded default)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gateway.stages import LatentBlock, LatentRequest, PcmPiece
from services.diffusion.diffrhythm2.engine import DiffusionEngine
from services.diffusion.engine import GenerationRequest
from services.runtime.cancellation import CancellationToken
from services.style.muq_mulan.engine import StyleEngine
from services.tokenizer.engine import TokenizerEngine
from services.vocoder.diffrhythm2.engine import VocoderEngine

MODEL_NAME = "diffrhythm2"


@dataclass(frozen=True)
class ModelPaths:
    """Where the model files are: the DiffRhythm 2 folder and the MuQ-MuLan checkpoint folder."""

    diffrhythm2: Path
    mulan: Path

    @classmethod
    def under(cls, root: str | Path) -> ModelPaths:
        """The standard layout under a model root: `diffrhythm2/` and `muq-mulan/<checkpoint>/`.

        Real MuQ-MuLan-large weights win over the demo model when both are present.
        """
        root = Path(root)
        mulan_root = root / "muq-mulan"
        candidates = [mulan_root / "MuQ-MuLan-large", mulan_root / "MuQ-MuLan-demo"]
        mulan = next((path for path in candidates if path.is_dir()), candidates[0])
        return cls(diffrhythm2=root / "diffrhythm2", mulan=mulan)


class LocalStages:
    """Tokenizer, style encoder, diffusion and vocoder engines loaded in this process."""

    model_name = MODEL_NAME

    def __init__(self, paths: ModelPaths, device: str = "cpu") -> None:
        """Load every engine (raises FailedPreconditionError when a model is missing)."""
        self.tokenizer = TokenizerEngine.load()
        self.style = StyleEngine.load(paths.mulan, device=device)
        self.diffusion = DiffusionEngine.load(paths.diffrhythm2, device=device)
        self.vocoder = VocoderEngine.load(paths.diffrhythm2, device=device)
        self.sample_rate = self.vocoder.sample_rate

    def tokenize(self, lyrics: str, job_id: str, token: CancellationToken) -> np.ndarray:
        """Lyric token ids, int64 [L]."""
        return np.asarray(self.tokenizer.tokenize(lyrics, token).tokens, dtype=np.int64)

    def embed_text(self, prompt: str, job_id: str, token: CancellationToken) -> np.ndarray:
        """The style vector of a prompt."""
        return self.style.embed_text(prompt).vector

    def embed_audio(self, data: bytes, job_id: str, token: CancellationToken) -> np.ndarray:
        """The style vector of a whole reference recording."""
        return self.style.embed_audio(data, token=token).vector

    def generate_latents(self, request: LatentRequest, token: CancellationToken) -> Iterator[LatentBlock]:
        """The song's blocks after the prefix, straight from the sampler."""
        song = GenerationRequest(
            tokens=request.tokens,
            style=request.style,
            seed=request.seed,
            steps=request.steps,
            cfg_strength=request.cfg_strength,
            max_frames=request.max_frames,
            prefix=request.prefix,
        )
        for block in self.diffusion.generate(song, token):
            yield LatentBlock(block.index, block.frames, block.final, block.max_blocks)

    def decode(
        self, blocks: Iterable[np.ndarray], job_id: str, token: CancellationToken
    ) -> Iterator[PcmPiece]:
        """Streaming decode: PCM as soon as it can no longer change."""
        decoder = self.vocoder.stream(token)
        for latents in blocks:
            for piece in decoder.push(latents):
                yield PcmPiece(piece.offset, piece.samples[0])
        for piece in decoder.finish():
            yield PcmPiece(piece.offset, piece.samples[0])

    def close(self) -> None:
        """Nothing to release: the engines go with the process."""
