"""DiffRhythm v1's vocoder engine: the Oobleck VAE decoding latents [frames, 64] to 44.1 kHz stereo
[2, frames * 2048], whole or in the reference's chunked windows, streamed window by window; and the
encoder for editing, a reference song to its VAE encoding [frames, 128] (mean | scale)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from services.runtime.cancellation import CancellationToken
from services.runtime.errors import InvalidArgumentError
from services.runtime.model_info import ModelInfo, model_name
from services.runtime.recording import DATA_FIELD, RecordingLimits, read_recording
from services.vocoder.diffrhythm1.checkpoint import load_vae
from services.vocoder.diffrhythm1.oobleck import AUDIO_CHANNELS, LATENT_DIM, SAMPLES_PER_FRAME, OobleckVae
from services.vocoder.engine import VocoderSettings
from services.vocoder.streaming import StreamingDecoder, validate_latents
from services.vocoder.windows import ChunkPlan

FAMILY = "diffrhythm1"
SAMPLE_RATE = 44100
WINDOWS = ChunkPlan(window_frames=128, overlap_frames=32)
DEFAULT_MAX_FRAMES = 6144
MAX_REFERENCE_SECONDS = 600
REFERENCE_PEAK_DBFS = -6.0
REFERENCE_FIELD = "reference_audio"
RECORDING_LIMITS = RecordingLimits(max_bytes=256 << 20, max_seconds=MAX_REFERENCE_SECONDS)


@dataclass(frozen=True)
class DecodeOptions:
    """How `decode` runs: whole (one decoder call, the reference's default) or `chunked` (the
    reference's `--chunked`: 128-frame windows, memory bounded by one window)."""

    chunked: bool = False


class DiffRhythm1Vocoder:
    """The loaded Oobleck VAE with the reference's decode and encode."""

    def __init__(
        self, vae: OobleckVae, device: torch.device, max_frames: int, info: ModelInfo | None = None
    ) -> None:
        """Wrap a loaded VAE; use `load` to read a model folder."""
        self.vae = vae
        self.device = device
        self.max_frames = max_frames
        self.info = info or ModelInfo(
            name=FAMILY,
            family=FAMILY,
            revision="",
            families=(FAMILY,),
            sample_rate=SAMPLE_RATE,
            frame_rate=SAMPLE_RATE / SAMPLES_PER_FRAME,
            channels=AUDIO_CHANNELS,
            peak_normalize=True,
        )

    @classmethod
    def load(
        cls, model_dir: str | Path, device: str = "cpu", max_frames: int = DEFAULT_MAX_FRAMES, name: str = ""
    ) -> DiffRhythm1Vocoder:
        """Load the pinned `vae_model.pt` from `model_dir` into our modules (FailedPreconditionError
        when it is absent, not pinned by the manifest, changed, or not an Oobleck VAE)."""
        path = Path(model_dir)
        vae, digest = load_vae(path)
        target = torch.device(device)
        info = ModelInfo(
            name=model_name(path, name),
            family=FAMILY,
            revision=digest,
            families=(FAMILY,),
            sample_rate=SAMPLE_RATE,
            frame_rate=SAMPLE_RATE / SAMPLES_PER_FRAME,
            channels=AUDIO_CHANNELS,
            peak_normalize=True,
        )
        return cls(vae.to(target), target, max_frames, info)

    @classmethod
    def from_settings(cls, model_dir: Path, settings: VocoderSettings) -> DiffRhythm1Vocoder:
        """`load` with the stage's settings (the family registry's entry point)."""
        return cls.load(
            model_dir, settings.device, settings.max_frames_cap or DEFAULT_MAX_FRAMES, settings.name
        )

    def warm_up(self) -> None:
        """Decode one silent window so the first real request does not pay for kernel selection."""
        self.decode_window(np.zeros((WINDOWS.window_frames, LATENT_DIM), np.float32))

    def decode_window(self, latents: np.ndarray) -> np.ndarray:
        """Decode frames [n, 64] on their own into audio [2, n * 2048]."""
        batch = torch.from_numpy(np.ascontiguousarray(latents.T))[None].to(self.device)
        with torch.inference_mode():
            audio = self.vae.decoder(batch)
        return audio[0].to("cpu", torch.float32).numpy()

    def decode(
        self,
        latents: np.ndarray,
        token: CancellationToken | None = None,
        options: DecodeOptions | None = None,
    ) -> np.ndarray:
        """The reference decode of a whole song, [frames, 64] to [2, frames * 2048]: one decoder call,
        or with `options.chunked` the reference's windows (128 frames, hop 96, 16-frame trims at
        shared edges, the last window aligned to the end)."""
        frames = self._validate(latents)
        if options is None or not options.chunked:
            if token is not None:
                token.check()
            return self.decode_window(frames)
        audio = np.zeros((AUDIO_CHANNELS, len(frames) * SAMPLES_PER_FRAME), np.float32)
        for paste in WINDOWS.pastes(len(frames)):
            if token is not None:
                token.check()
            window = self.decode_window(frames[paste.start : paste.start + paste.frames])
            begin = (paste.start + paste.keep_from) * SAMPLES_PER_FRAME
            kept = window[:, paste.keep_from * SAMPLES_PER_FRAME : paste.keep_to * SAMPLES_PER_FRAME]
            audio[:, begin : begin + kept.shape[1]] = kept
        return audio

    def stream(self, token: CancellationToken | None = None) -> StreamingDecoder:
        """A decoder for one song whose latents arrive in pieces; its audio equals the chunked decode,
        released window by window."""
        return StreamingDecoder(
            self.decode_window, LATENT_DIM, SAMPLES_PER_FRAME, self.max_frames, WINDOWS, token
        )

    def encode(self, audio: np.ndarray, token: CancellationToken | None = None) -> np.ndarray:
        """A reference song's VAE encoding [frames, 128] (mean | scale), as the reference's edit mode
        makes it: 44.1 kHz audio [channels, n] made stereo (mono doubled, channels past two
        dropped), peak-normalised to -6 dBFS, encoded in 128-frame windows (hop 96, the last aligned
        to the end, 16-frame trims), frames = n // 2048. Resampling is the caller's job."""
        stereo = self._reference_audio(audio)
        total = stereo.shape[1]
        frames = total // SAMPLES_PER_FRAME
        window = WINDOWS.window_frames * SAMPLES_PER_FRAME
        if total < window:
            return np.ascontiguousarray(self._encode_window(stereo, token).T)
        starts = list(range(0, total - window + 1, WINDOWS.hop_frames * SAMPLES_PER_FRAME))
        if starts[-1] + window != total:
            starts.append(total - window)
        encoding = np.zeros((2 * LATENT_DIM, frames), np.float32)
        trim, last = WINDOWS.trim_frames, len(starts) - 1
        for index, start in enumerate(starts):
            piece = self._encode_window(stereo[:, start : start + window], token)
            begin = frames - piece.shape[1] if index == last else start // SAMPLES_PER_FRAME
            keep_from = trim if index > 0 else 0
            keep_to = piece.shape[1] - (trim if index < last else 0)
            encoding[:, begin + keep_from : begin + keep_to] = piece[:, keep_from:keep_to]
        return np.ascontiguousarray(encoding.T)

    def encode_recording(self, data: bytes, token: CancellationToken | None = None) -> np.ndarray:
        """`encode` of an encoded recording (WAV, FLAC, MP3 or OGG; any rate and channel count,
        brought to 44.1 kHz): the latents an edit starts from. INVALID_ARGUMENT on field `data` for
        a file it cannot take."""
        audio = read_recording(data, RECORDING_LIMITS, SAMPLE_RATE)
        try:
            return self.encode(audio, token)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(DATA_FIELD, exc.violations[0].description) from exc

    def _encode_window(self, audio: torch.Tensor, token: CancellationToken | None) -> np.ndarray:
        if token is not None:
            token.check()
        with torch.inference_mode():
            encoded = self.vae.encoder(audio[None].to(self.device))
        return encoded[0].to("cpu", torch.float32).numpy()

    def _reference_audio(self, audio: np.ndarray) -> torch.Tensor:
        """The reference song as the encoder takes it: stereo float32, peak at -6 dBFS."""
        array = np.asarray(audio)
        if array.ndim != 2 or array.shape[0] < 1 or not np.issubdtype(array.dtype, np.floating):
            raise InvalidArgumentError(
                REFERENCE_FIELD, f"expected float [channels, samples], got {array.dtype} {list(array.shape)}"
            )
        if array.shape[1] < SAMPLES_PER_FRAME or array.shape[1] > MAX_REFERENCE_SECONDS * SAMPLE_RATE:
            raise InvalidArgumentError(
                REFERENCE_FIELD,
                f"must be {SAMPLES_PER_FRAME} samples to {MAX_REFERENCE_SECONDS} s at 44.1 kHz, "
                f"got {array.shape[1]} samples",
            )
        if not np.isfinite(array).all():
            raise InvalidArgumentError(REFERENCE_FIELD, "contains NaN or infinite values")
        stereo = torch.from_numpy(np.ascontiguousarray(array, np.float32))
        stereo = stereo.repeat(2, 1) if stereo.shape[0] == 1 else stereo[:AUDIO_CHANNELS]
        peak = stereo.abs().max()
        if peak == 0:
            raise InvalidArgumentError(REFERENCE_FIELD, "the reference song is silent")
        return stereo * (10.0 ** (REFERENCE_PEAK_DBFS / 20.0) / peak)

    def _validate(self, latents: np.ndarray) -> np.ndarray:
        frames = validate_latents(latents, LATENT_DIM)
        if len(frames) > self.max_frames:
            raise InvalidArgumentError(
                "frames", f"{len(frames)} frames is more than the cap of {self.max_frames}"
            )
        return frames
