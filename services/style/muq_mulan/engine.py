"""MuQ-MuLan's style engine: prompts and reference recordings in, 512-d style vectors out.

Plain Python and torch, no gRPC: the servicer, the CLI and the gateway's in-process pipeline all
call it through the stage's `StyleEngine` interface. Inputs are validated here and rejected with
`InvalidArgumentError` naming the proto field.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from services.runtime.cancellation import CancellationToken
from services.runtime.errors import InternalError, InvalidArgumentError
from services.runtime.model_info import (
    STYLE_AUDIO,
    STYLE_TEXT,
    ModelInfo,
    model_name,
    weights_revision,
)
from services.style.audio_io import DATA_FIELD, decode_audio
from services.style.engine import (
    CROP_MIDDLE,
    CROP_RANDOM,
    CROP_WHOLE,
    CropMode,
    Embedding,
    StyleLimits,
    StyleSettings,
)
from services.style.muq_mulan.clips import middle_crop, random_crop, whole_recording_clips
from services.style.muq_mulan.loader import LoadedModel, load_mulan
from services.style.text_cache import TextEmbeddingCache

FAMILY = "muq-mulan"
# The generation families conditioned on MuQ-MuLan vectors.
SERVES = ("diffrhythm2", "diffrhythm1")
PROMPT_FIELD = "prompt"
WARM_UP_PROMPT = "warm-up: pop, piano, happy"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class StyleEngine:
    """MuQ-MuLan inference with input limits and a prompt cache; safe to call from several threads."""

    def __init__(
        self,
        loaded: LoadedModel,
        limits: StyleLimits,
        text_cache_size: int,
        device: str,
        info: ModelInfo | None = None,
    ) -> None:
        self.info = info or ModelInfo(name=FAMILY, family=FAMILY, revision="", families=SERVES)
        self.loaded = loaded
        self.model = loaded.model
        self.limits = limits
        self.device = torch.device(device)
        self.text_cache = TextEmbeddingCache(text_cache_size)
        self.sample_rate = loaded.model.config.sample_rate
        self.clip_samples = loaded.model.config.clip_samples

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        device: str = "cpu",
        *,
        limits: StyleLimits | None = None,
        text_cache_size: int = 1024,
        hub_cache_dir: str | None = None,
        warm_up: bool = False,
        name: str = "",
    ) -> StyleEngine:
        """Load the MuLan checkpoint folder `model_dir` (FAILED_PRECONDITION when it is missing or
        does not match); `warm_up` runs one text and one audio pass so the first call is not slow."""
        loaded = load_mulan(model_dir, device=device, hub_cache_dir=hub_cache_dir)
        path = Path(model_dir)
        weights = next(path / name for name in WEIGHT_FILES if (path / name).is_file())
        info = ModelInfo(
            name=model_name(path, name),
            family=FAMILY,
            revision=weights_revision([weights]),
            families=SERVES,
            inputs=(STYLE_TEXT, STYLE_AUDIO),
        )
        engine = cls(loaded, limits or StyleLimits(), text_cache_size, device, info)
        if warm_up:
            engine.warm_up()
        return engine

    @classmethod
    def from_settings(cls, model_dir: Path, settings: StyleSettings) -> StyleEngine:
        """`load` (warmed up) with the stage's settings: the family registry's entry point."""
        return cls.load(
            model_dir,
            settings.device,
            limits=settings.limits,
            text_cache_size=settings.text_cache_size,
            hub_cache_dir=settings.hub_cache_dir,
            warm_up=True,
            name=settings.name,
        )

    def warm_up(self) -> None:
        """Run the text and audio paths once (nothing is cached)."""
        self._encode_prompts([WARM_UP_PROMPT])
        noise = np.random.default_rng(0).standard_normal(self.sample_rate).astype(np.float32) * 0.01
        self.clip_latents([noise])

    def validate_prompt(self, prompt: str) -> None:
        """INVALID_ARGUMENT on field `prompt` when it is empty or longer than the limit."""
        if not prompt:
            raise InvalidArgumentError(PROMPT_FIELD, "the prompt is empty")
        if len(prompt) > self.limits.max_prompt_chars:
            raise InvalidArgumentError(
                PROMPT_FIELD,
                f"the prompt has {len(prompt)} characters; the limit is {self.limits.max_prompt_chars}",
            )

    def embed_text(self, prompt: str) -> Embedding:
        """A prompt's unit style vector, float32 [512], and whether it came from the prompt cache. The
        prompt is embedded alone (no padding), as DiffRhythm 2 calls MuQ-MuLan."""
        self.validate_prompt(prompt)
        cached = self.text_cache.get(prompt)
        if cached is not None:
            return Embedding(cached, cached=True)
        vector = self._encode_prompts([prompt])[0]
        self.text_cache.put(prompt, vector)
        return Embedding(vector, cached=False)

    def embed_texts(self, prompts: list[str]) -> np.ndarray:
        """Several prompts in one padded batch, [N, 512], exactly like the reference's
        `mulan(texts=prompts)`: padding enters the mean, so rows differ slightly from `embed_text`."""
        for prompt in prompts:
            self.validate_prompt(prompt)
        return self._encode_prompts(prompts)

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask [N, longest], padded with XLM-R's pad id, no truncation;
        INVALID_ARGUMENT on `prompt` when a prompt makes more tokens than XLM-R has positions."""
        encodings = self.loaded.tokenizer.encode_batch(prompts)
        longest = max(len(e.ids) for e in encodings)
        if longest > self.loaded.max_tokens:
            raise InvalidArgumentError(
                PROMPT_FIELD,
                f"the prompt makes {longest} tokens; the text model accepts at most {self.loaded.max_tokens}",
            )
        input_ids = torch.full((len(prompts), longest), self.loaded.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), longest), dtype=torch.long)
        for row, encoding in enumerate(encodings):
            input_ids[row, : len(encoding.ids)] = torch.tensor(encoding.ids, dtype=torch.long)
            attention_mask[row, : len(encoding.ids)] = 1
        return input_ids.to(self.device), attention_mask.to(self.device)

    def _encode_prompts(self, prompts: list[str]) -> np.ndarray:
        input_ids, attention_mask = self.tokenize(prompts)
        with torch.inference_mode():
            latents = self.model.text_latents(input_ids, attention_mask)
        return latents.float().cpu().numpy()

    def embed_audio(
        self,
        data: bytes,
        crop: CropMode = CROP_WHOLE,
        seed: int = 0,
        token: CancellationToken | None = None,
    ) -> Embedding:
        """Embed an encoded recording (WAV, FLAC, MP3 or OGG; any rate and channel count).
        `crop="whole"` averages every 10 s clip (deterministic); `crop="random"` embeds one 10 s
        window drawn from `seed`, as DiffRhythm 2 does; `crop="middle"` embeds the 10 s from 5 s
        before the middle second, as DiffRhythm v1 does (which refuses recordings under 10 s).
        INVALID_ARGUMENT on field `data` for empty, undecodable, over-long or over-size audio, a
        sample rate or channel count over the limits, or a recording too short for the middle crop."""
        if len(data) > self.limits.max_audio_bytes:
            raise InvalidArgumentError(
                DATA_FIELD, f"the file has {len(data)} bytes; the limit is {self.limits.max_audio_bytes}"
            )
        decoded = decode_audio(data, self.sample_rate, self.limits)
        return self.embed_waveform(decoded.samples, crop, seed, token, seconds=decoded.seconds)

    def embed_waveform(
        self,
        samples: np.ndarray,
        crop: CropMode = CROP_WHOLE,
        seed: int = 0,
        token: CancellationToken | None = None,
        seconds: float | None = None,
    ) -> Embedding:
        """Embed mono float32 samples already at the model rate (24 kHz); see `embed_audio`."""
        if crop not in (CROP_WHOLE, CROP_RANDOM, CROP_MIDDLE):
            raise InvalidArgumentError("options.crop", f"unknown crop mode {crop!r}")
        if samples.ndim != 1 or samples.size == 0:
            raise InvalidArgumentError(DATA_FIELD, "the recording holds no samples")
        duration = samples.size / self.sample_rate if seconds is None else seconds
        if crop == CROP_RANDOM:
            samples = random_crop(samples, self.clip_samples, seed)
        elif crop == CROP_MIDDLE:
            clip_seconds = self.clip_samples / self.sample_rate
            if duration < clip_seconds:
                raise InvalidArgumentError(
                    DATA_FIELD,
                    f"the recording is {duration:.2f} s; the middle crop takes {clip_seconds:g} s, "
                    f"so at least {clip_seconds:g} s are needed",
                )
            samples = middle_crop(samples, self.clip_samples, self.sample_rate, duration)
        latents = self.clip_latents(whole_recording_clips(samples, self.clip_samples), token)
        vector = latents.mean(axis=0)
        if not np.isfinite(vector).all():
            raise InternalError("the model produced a NaN or infinite style vector for this recording")
        return Embedding(vector, clips=latents.shape[0], seconds=duration)

    def clip_latents(self, clips: list[np.ndarray], token: CancellationToken | None = None) -> np.ndarray:
        """The unit latent of each clip, [n_clips, 512], one clip at a time as the reference does."""
        rows = []
        with torch.inference_mode():
            for clip in clips:
                if token is not None:
                    token.check()
                wave = torch.from_numpy(np.ascontiguousarray(clip, dtype=np.float32)).to(self.device)
                rows.append(self.model.audio_latents(wave.unsqueeze(0))[0].float().cpu())
        return torch.stack(rows).numpy()
