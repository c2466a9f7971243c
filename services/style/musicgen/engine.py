"""MusicGen's style engine: a prompt's T5 states and, for melody models, a recording's chroma.

`embed_text` gives the T5 encoder's last hidden state float32 [tokens, d_text] for one prompt (the
generation stage projects it and forms the unconditional branch). `embed_audio` gives the one-hot
chroma float32 [frames, 12] of a melody reference: any common format and rate, channels averaged,
resampled to 32 kHz with the reference's sinc filter, at most 30 s read. Inputs are checked here and
refused with InvalidArgumentError naming the proto field.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from services.runtime.cancellation import CancellationToken
from services.runtime.errors import InvalidArgumentError
from services.runtime.hub_checkpoint import weight_files
from services.runtime.model_files import read_json
from services.runtime.model_info import MELODY_AUDIO, STYLE_TEXT, ModelInfo, model_name, weights_revision
from services.style.audio_io import DATA_FIELD, read_mono
from services.style.engine import CROP_WHOLE, CropMode, Embedding, StyleLimits, StyleSettings
from services.style.musicgen.chroma import ChromaExtractor, ChromaSettings
from services.style.musicgen.resample import sinc_resample
from services.style.musicgen.text_encoder import TextEncoder, load_text_encoder
from services.style.text_cache import TextEmbeddingCache

FAMILY = "musicgen"
PROMPT_FIELD = "prompt"
CROP_FIELD = "options.crop"
MELODY_MODEL_TYPE = "musicgen_melody"
WARM_UP_PROMPT = "warm-up: pop, piano, happy"
# The melody reference's resampler (torchaudio's sinc filter with these settings).
RESAMPLE_ROLLOFF = 0.945
RESAMPLE_ZERO_CROSSINGS = 24


class MusicgenStyleEngine:
    """T5 text states and melody chroma with input limits and a prompt cache."""

    def __init__(
        self,
        text_encoder: TextEncoder,
        chroma: ChromaExtractor | None,
        limits: StyleLimits,
        text_cache_size: int,
        info: ModelInfo | None = None,
    ) -> None:
        """`chroma` is None for models without melody conditioning."""
        self.text_encoder = text_encoder
        self.chroma = chroma
        self.limits = limits
        self.text_cache = TextEmbeddingCache(text_cache_size)
        inputs = (STYLE_TEXT, MELODY_AUDIO) if chroma is not None else (STYLE_TEXT,)
        self.info = info or ModelInfo(
            name=FAMILY, family=FAMILY, revision="", families=(FAMILY,), inputs=inputs
        )

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        device: str = "cpu",
        *,
        limits: StyleLimits | None = None,
        text_cache_size: int = 1024,
        name: str = "",
    ) -> MusicgenStyleEngine:
        """Load the T5 encoder (and the chroma for melody models) of the MusicGen folder `model_dir`;
        FailedPreconditionError when its files are missing or do not fit its config."""
        path = Path(model_dir)
        text_encoder = load_text_encoder(path, device)
        melody = (read_json(path, "config.json") or {}).get("model_type") == MELODY_MODEL_TYPE
        chroma = ChromaExtractor(ChromaSettings.from_model_dir(path)) if melody else None
        info = ModelInfo(
            name=model_name(path, name),
            family=FAMILY,
            revision=weights_revision(weight_files(path)),
            families=(FAMILY,),
            inputs=(STYLE_TEXT, MELODY_AUDIO) if melody else (STYLE_TEXT,),
        )
        return cls(text_encoder, chroma, limits or StyleLimits(), text_cache_size, info)

    @classmethod
    def from_settings(cls, model_dir: Path, settings: StyleSettings) -> MusicgenStyleEngine:
        """`load` (warmed up) with the stage's settings: the family registry's entry point."""
        engine = cls.load(
            model_dir,
            settings.device,
            limits=settings.limits,
            text_cache_size=settings.text_cache_size,
            name=settings.name,
        )
        engine.warm_up()
        return engine

    def warm_up(self) -> None:
        """Run the text path (and the chroma) once; nothing is cached."""
        self.text_encoder.encode(self.text_encoder.token_ids(WARM_UP_PROMPT))
        if self.chroma is not None:
            self.chroma(np.zeros(self.chroma.settings.n_fft, np.float32))

    def token_ids(self, prompt: str) -> list[int]:
        """The prompt's T5 token ids; INVALID_ARGUMENT on `prompt` when it is empty or too long
        (in characters, or in tokens for the text encoder)."""
        if not prompt or not prompt.strip():
            raise InvalidArgumentError(PROMPT_FIELD, "the prompt is empty")
        if len(prompt) > self.limits.max_prompt_chars:
            raise InvalidArgumentError(
                PROMPT_FIELD,
                f"the prompt has {len(prompt)} characters; the limit is {self.limits.max_prompt_chars}",
            )
        ids = self.text_encoder.token_ids(prompt)
        if len(ids) > self.text_encoder.max_tokens:
            raise InvalidArgumentError(
                PROMPT_FIELD,
                f"the prompt makes {len(ids)} tokens; "
                f"the T5 encoder takes at most {self.text_encoder.max_tokens}",
            )
        return ids

    def embed_text(self, prompt: str) -> Embedding:
        """The prompt's T5 states, float32 [tokens, d_text], and whether they came from the cache."""
        ids = self.token_ids(prompt)
        cached = self.text_cache.get(prompt)
        if cached is not None:
            return Embedding(cached, cached=True)
        states = self.text_encoder.encode(ids).numpy()
        self.text_cache.put(prompt, states)
        return Embedding(states, cached=False)

    def embed_audio(
        self, data: bytes, crop: CropMode = CROP_WHOLE, seed: int = 0, token: CancellationToken | None = None
    ) -> Embedding:
        """The one-hot chroma [frames, 12] of an encoded melody recording (its first 30 s).

        INVALID_ARGUMENT on `data` for a model without melody conditioning, or empty, undecodable,
        over-long or over-size audio; on `options.crop` for a crop other than whole (`seed` is unused).
        """
        if self.chroma is None:
            raise InvalidArgumentError(DATA_FIELD, "this MusicGen model takes no melody recording")
        if crop != CROP_WHOLE:
            raise InvalidArgumentError(
                CROP_FIELD, f"MusicGen reads the whole melody recording, not crop {crop!r}"
            )
        if len(data) > self.limits.max_audio_bytes:
            raise InvalidArgumentError(
                DATA_FIELD, f"the file has {len(data)} bytes; the limit is {self.limits.max_audio_bytes}"
            )
        longest = self.chroma.max_samples / self.chroma.settings.sample_rate + 1.0
        decoded = read_mono(data, self.limits, longest)
        if token is not None:
            token.check()
        embedding = self.embed_waveform(decoded.samples[None], decoded.sample_rate)
        return Embedding(embedding.vector, seconds=decoded.seconds)

    def embed_waveform(self, samples: np.ndarray, sample_rate: int) -> Embedding:
        """The chroma of float32 audio [channels, samples] at `sample_rate`: channels averaged, then
        resampled to the chroma's rate; `seconds` is the recording's duration."""
        if self.chroma is None:
            raise InvalidArgumentError(DATA_FIELD, "this MusicGen model takes no melody recording")
        if samples.ndim != 2 or samples.shape[1] == 0:
            raise InvalidArgumentError(DATA_FIELD, "the recording holds no samples")
        mono = samples.mean(axis=0, dtype=np.float32) if samples.shape[0] > 1 else samples[0]
        target = self.chroma.settings.sample_rate
        if sample_rate != target:
            longest = self.chroma.max_samples * sample_rate // target + sample_rate
            wave = torch.from_numpy(np.ascontiguousarray(mono[:longest], dtype=np.float32))
            mono = sinc_resample(wave, sample_rate, target, RESAMPLE_ZERO_CROSSINGS, RESAMPLE_ROLLOFF).numpy()
        return Embedding(self.chroma(mono), seconds=samples.shape[1] / sample_rate)
