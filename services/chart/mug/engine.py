"""The Mug-Diffusion chart engine: a song and a chart prompt in, osu!mania charts out.

One request runs the reference app's path once for `count` charts together: the song's mel features
and the audio encoder once (shared by every chart), the prompt and the all-unset prompt through the
feature embedding, the DDIM sampler with one batched UNet call per step ([unconditional x count;
conditional x count]), the note decoder, then per chart the hit objects, the beat grid, snapping,
the mini-jack clean-up and the `.osu` text. What depends only on the latent length (S4 kernels,
attention position terms) is computed once per length and kept for the next requests.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from services.chart.engine import (
    Chart,
    ChartEvent,
    ChartProgress,
    ChartRequest,
    ChartSettings,
    FeatureValue,
    HitObject,
    SongAudio,
)
from services.chart.mug import NAME
from services.chart.mug.audio import (
    decode_song,
    latent_length,
    mel_features,
    padded_features,
    prepare_song,
)
from services.chart.mug.batch_invariant import at_least_two_rows
from services.chart.mug.checkpoint import MugDiffusion, build_networks, read_state_dict
from services.chart.mug.config import WEIGHTS_FILE, MugConfig
from services.chart.mug.features import FeaturePrompt
from services.chart.mug.grid import FALLBACK_GRID, Grid, fit_grid, snap
from services.chart.mug.hit_objects import KEYS, NOTE_CHANNELS, notes_to_hit_objects
from services.chart.mug.mini_jacks import remove_mini_jacks
from services.chart.mug.osu import ChartMetadata, osu_text
from services.chart.mug.sampler import Conditioning, DdimSampler, start_noise, visited_timesteps
from services.chart.mug.unet import UNetPlan
from services.runtime.cancellation import CancellationToken
from services.runtime.errors import FailedPreconditionError, InvalidArgumentError
from services.runtime.model_info import ModelInfo, model_name, weights_revision

MAX_GUIDANCE = 100.0
MAX_JACK_INTERVAL_MS = 1000.0
MAX_SEED = 2**64 - 1
PLANS_KEPT = 2
DEFAULT_TITLE = "Untitled"
DEFAULT_ARTIST = "Unknown Artist"


@dataclass(frozen=True)
class ValidatedRequest:
    """A validated request: the song as the model's mono signal and the checked prompt."""

    request: ChartRequest
    song: np.ndarray
    features: dict[str, FeatureValue]


class MugChartEngine:
    """A loaded Mug-Diffusion model (see the module docstring)."""

    def __init__(
        self, model: MugDiffusion, prompt: FeaturePrompt, info: ModelInfo, settings: ChartSettings
    ) -> None:
        """Wrap a loaded model; use `load` to build one from a model folder."""
        self.model = model
        self.config: MugConfig = model.config
        self.prompt = prompt
        self.info = info
        self.settings = settings
        self.device = torch.device(settings.device)
        self.sampler = DdimSampler(model.unet_model, model.alphas_cumprod)
        self._plans: OrderedDict[int, UNetPlan] = OrderedDict()
        self._plans_lock = threading.Lock()

    @classmethod
    def load(cls, model_dir: str | Path, settings: ChartSettings | None = None) -> MugChartEngine:
        """Load `model.yaml`, the feature list it names and `model.ckpt` (strictly) from `model_dir`.

        FailedPreconditionError when a file is missing or does not match the config.
        """
        settings = settings or ChartSettings()
        path = Path(model_dir)
        config = MugConfig.load(path)
        if config.note_decoder.x_channels != NOTE_CHANNELS:
            raise FailedPreconditionError(
                f"only {KEYS}-key charts ({NOTE_CHANNELS} note channels) are supported, "
                f"model.yaml has x_channels {config.note_decoder.x_channels}"
            )
        prompt = FeaturePrompt.load(path / config.feature_yaml)
        model = build_networks(config, prompt.rows)
        model.load_state(read_state_dict(path / WEIGHTS_FILE))
        model.eval().to(settings.device)
        info = ModelInfo(
            name=model_name(path, settings.name),
            family=NAME,
            revision=weights_revision([path / WEIGHTS_FILE]),
            families=(NAME,),
            sample_rate=config.audio.sample_rate,
            frame_rate=config.audio.sample_rate / (config.audio.hop_length * config.frames_per_latent),
            channels=1,
        )
        return cls(model, prompt, info, settings)

    def parse_features(self, assignments: list[str]) -> dict[str, FeatureValue]:
        """`NAME=VALUE` strings as checked values; InvalidArgumentError naming the feature."""
        return self.prompt.parse(assignments)

    def warm_up(self) -> None:
        """One step of one chart on a second of silence (sets up the shortest length's kernels)."""
        audio = SongAudio(
            pcm=np.zeros(self.config.audio.sample_rate, np.float32), sample_rate=self.config.audio.sample_rate
        )
        for _ in self.generate(ChartRequest(audio=audio, steps=1, guidance=1.0)):
            pass

    # The pipeline, step by step (public so that tests can check every intermediate).

    def read_song(self, audio: SongAudio) -> np.ndarray:
        """The request's audio as the model's mono signal; INVALID_ARGUMENT on a bad song."""
        limit = self.settings.max_audio_seconds
        if (audio.encoded is None) == (audio.pcm is None):
            raise InvalidArgumentError(
                "encoded_audio", "send the song either as encoded audio bytes or as PCM"
            )
        if audio.encoded is not None:
            pcm, rate = decode_song(audio.encoded, "encoded_audio", limit)
            return prepare_song(pcm, rate, self.config.audio, "encoded_audio", limit)
        return prepare_song(audio.pcm, audio.sample_rate, self.config.audio, "pcm", limit)

    def song_features(self, song: np.ndarray) -> tuple[np.ndarray, int]:
        """(features [n_mels, L * 64] float32 holding float16 values, latent length L)."""
        mel = mel_features(song, self.config.audio)
        length = latent_length(mel.shape[1], self.config.frames_per_latent)
        return padded_features(mel, length * self.config.frames_per_latent), length

    @torch.inference_mode()
    def audio_levels(self, features: np.ndarray) -> list[torch.Tensor]:
        """The audio encoder's outputs the UNet reads, finest first, each [1, channels, L / 2^i]."""
        levels = self.model.wave_model(torch.from_numpy(features)[None].to(self.device))
        return levels[-len(self.config.unet.channel_mult) :]

    @torch.inference_mode()
    def contexts(
        self, features: dict[str, FeatureValue], count: int, guided: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(conditional, unconditional or None) prompt contexts, each [count, tokens, embed_dim]."""

        def embed(ids: list[int]) -> torch.Tensor:
            table = self.model.embedding
            return table(torch.tensor([ids], device=self.device)).expand(count, -1, -1)

        unconditional = embed(self.prompt.unconditional_ids()) if guided else None
        return embed(self.prompt.ids(features)), unconditional

    def plan(self, length: int) -> UNetPlan:
        """The UNet's per-length constants for latents of `length` (the last few are kept)."""
        with self._plans_lock:
            plan = self._plans.get(length)
            if plan is not None:
                self._plans.move_to_end(length)
                return plan
            with torch.inference_mode():
                plan = self.model.unet_model.plan(length, self.prompt.tokens)
            self._plans[length] = plan
            while len(self._plans) > PLANS_KEPT:
                self._plans.popitem(last=False)
            return plan

    def clear_plans(self) -> None:
        """Forget the kept per-length constants (a benchmark starts each run from an empty cache)."""
        with self._plans_lock:
            self._plans.clear()

    @torch.inference_mode()
    def decode_notes(self, latents: torch.Tensor) -> np.ndarray:
        """Note logits [count, 16, 8 L] float32 for latents [count, z_channels, L]."""
        notes = at_least_two_rows(self.model.decoder, latents.to(self.device))
        return notes.to("cpu", torch.float32).numpy()

    def make_chart(self, index: int, notes: np.ndarray, latents: np.ndarray, job: ValidatedRequest) -> Chart:
        """Chart `index` of a request from its decoded notes [16, 8 L]."""
        request = job.request
        hits = notes_to_hit_objects(notes, self.config.audio.note_frame_ms)
        grid, hits = arrange(hits, request.snap, request.jack_interval_ms)
        creator = f"MuG Diffusion v{self.config.version}"
        version = f"AI v{index + 1}"
        title = request.title or DEFAULT_TITLE
        artist = request.artist or DEFAULT_ARTIST
        metadata = ChartMetadata(
            audio_filename=request.audio_filename,
            title=title,
            artist=artist,
            creator=creator,
            version=version,
            prompt=f"{_prompt_text(request, job.features)}, {index}",
        )
        return Chart(
            index=index,
            seed=request.seed + index,
            keys=KEYS,
            hit_objects=tuple(hits),
            bpm=float(grid.bpm),
            offset_ms=float(grid.offset_ms),
            version=version,
            file_name=f"{artist} - {title} ({creator}) [{version}].osu".replace("/", ""),
            osu=osu_text(hits, grid, metadata),
            latents=latents,
        )

    # The request.

    def validate(self, request: ChartRequest) -> ValidatedRequest:
        """Check every field and prepare the song; InvalidArgumentError naming what is wrong."""
        features = check_request(request, self.prompt, self.config.timesteps, self.settings.max_count)
        return ValidatedRequest(request, self.read_song(request.audio), features)

    def generate(self, request: ChartRequest, token: CancellationToken | None = None) -> Iterator[ChartEvent]:
        """Validate `request` now (InvalidArgumentError), then return the iterator that makes its
        charts: ChartProgress after each sampler step, then every Chart in order."""
        job = self.validate(request)
        return self._charts(job, token)

    def _charts(self, job: ValidatedRequest, token: CancellationToken | None) -> Iterator[ChartEvent]:
        request = job.request
        features, length = self.song_features(job.song)
        levels = self.audio_levels(features)
        guided = request.guidance != 1.0
        context, unconditional = self.contexts(job.features, request.count, guided)
        conditioning = Conditioning(context, unconditional, levels)
        seeds = [request.seed + index for index in range(request.count)]
        latents = start_noise(seeds, (self.config.z_channels, length)).to(self.device)
        plan = self.plan(length)
        steps = self.sampler.iterate(latents, conditioning, request.steps, request.guidance, plan)
        while True:
            if token is not None:
                token.check()
            with torch.inference_mode():
                progress = next(steps, None)
            if progress is None:
                break
            done, total, latents = progress
            yield ChartProgress(done, total)
        notes = self.decode_notes(latents)
        final = latents.to("cpu", torch.float32).numpy()
        for index in range(request.count):
            if token is not None:
                token.check()
            yield self.make_chart(index, notes[index], final[index], job)


def check_request(
    request: ChartRequest, prompt: FeaturePrompt, timesteps: int, max_count: int, prefix: str = "options"
) -> dict[str, FeatureValue]:
    """Check a request's settings and chart prompt (not its audio) for a model with `timesteps` noise
    levels and the feature list `prompt`; returns the checked prompt. InvalidArgumentError naming
    `<prefix>.<field>` (`<prefix>.features.<name>` for a chart control)."""
    if not 1 <= request.steps <= timesteps:
        raise InvalidArgumentError(f"{prefix}.steps", f"must be 1..{timesteps}, got {request.steps}")
    if visited_timesteps(request.steps, timesteps)[0] >= timesteps:
        raise InvalidArgumentError(
            f"{prefix}.steps",
            f"{request.steps} steps would visit timestep {timesteps}, past the noise schedule "
            "(the reference fails there too); choose another count",
        )
    if not 1 <= request.count <= max_count:
        raise InvalidArgumentError(f"{prefix}.count", f"must be 1..{max_count}, got {request.count}")
    if not math.isfinite(request.guidance) or not 0 <= request.guidance <= MAX_GUIDANCE:
        raise InvalidArgumentError(
            f"{prefix}.guidance", f"must be 0..{MAX_GUIDANCE:g}, got {request.guidance}"
        )
    if not 0 <= request.seed <= MAX_SEED - (request.count - 1):
        raise InvalidArgumentError(
            f"{prefix}.seed", f"seed + count - 1 must be 0..{MAX_SEED}, got seed {request.seed}"
        )
    interval = request.jack_interval_ms
    if not math.isfinite(interval) or not 0 <= interval <= MAX_JACK_INTERVAL_MS:
        raise InvalidArgumentError(
            f"{prefix}.mini_jack_interval", f"must be 0..{MAX_JACK_INTERVAL_MS:g}, got {interval}"
        )
    return prompt.validate(request.features, f"{prefix}.features")


def arrange(
    hits: list[HitObject], snap_to_grid: bool, jack_interval_ms: float
) -> tuple[Grid, list[HitObject]]:
    """The chart's grid and its final objects: snapped (when asked) and cleaned of mini-jacks; a
    chart without notes keeps the fallback grid (120 BPM at 0) and no clean-up, as the reference."""
    if not hits:
        return FALLBACK_GRID, hits
    grid = fit_grid([hit.start_ms for hit in hits])
    if snap_to_grid:
        hits = [
            replace(
                hit,
                start_ms=snap(hit.start_ms, grid),
                end_ms=None if hit.end_ms is None else snap(hit.end_ms, grid),
            )
            for hit in hits
        ]
    return grid, remove_mini_jacks(hits, jack_interval_ms)


def _prompt_text(request: ChartRequest, features: dict[str, FeatureValue]) -> str:
    """The human-readable prompt written into the header (the reference's `AIPrompt`)."""
    parts = [f"{name}={value}" for name, value in features.items()]
    parts += [
        f"rm-interval={request.jack_interval_ms:g}",
        f"snapping={request.snap}",
        f"count={request.count}",
        f"step={request.steps}",
        f"cfg-scale={request.guidance}",
        f"seed={request.seed}",
    ]
    return ", ".join(parts)
