"""DiffRhythm 2's vocoder engine: the loaded BigVGAN decoder, the reference one-shot decode and the
streaming decode, as the stage's `VocoderEngine`. Every window goes through the engine's
`WindowBatcher`, so the windows of songs decoded concurrently are decoded together."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from services.runtime.cancellation import CancellationToken
from services.runtime.errors import FailedPreconditionError, InternalError, InvalidArgumentError
from services.runtime.model_info import ModelInfo, model_name, weights_revision
from services.vocoder.batching import WindowBatcher
from services.vocoder.diffrhythm2.bigvgan import BigVGANGenerator
from services.vocoder.diffrhythm2.checkpoint import load_generator
from services.vocoder.diffrhythm2.windows import WINDOW_FRAMES, WINDOWS
from services.vocoder.engine import VocoderSettings
from services.vocoder.streaming import StreamingDecoder, validate_latents

FAMILY = "diffrhythm2"
DEFAULT_MAX_FRAMES = 3000
# Windows decoded together when the setting says 0. On CPU a batch of windows is slower per window
# than one at a time (the activations of one 20-frame window already overflow the caches; measured
# in docs/vocoder.md), so batching is for accelerators.
AUTO_WINDOW_BATCH = {"cpu": 1, "cuda": 16}


class VocoderEngine:
    """Turns DiffRhythm 2 latents [frames, 64] (5 Hz) into mono float32 audio [1, samples] (48 kHz)."""

    def __init__(
        self,
        generator: BigVGANGenerator,
        device: torch.device,
        max_frames: int,
        info: ModelInfo | None = None,
        max_window_batch: int = 0,
    ) -> None:
        """Wrap an already loaded generator; use `load` to read a model directory. At most
        `max_window_batch` windows of concurrent songs are decoded together (0: 1 on CPU, 16 on CUDA)."""
        self.generator = generator
        self.device = device
        self.max_frames = max_frames
        self.info = info or ModelInfo(
            name=FAMILY,
            family=FAMILY,
            revision="",
            families=(FAMILY,),
            sample_rate=self.sample_rate,
            channels=1,
        )
        self.batcher = WindowBatcher(
            self.decode_windows, max_window_batch or AUTO_WINDOW_BATCH.get(device.type, 1)
        )

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        device: str = "cpu",
        max_frames: int = DEFAULT_MAX_FRAMES,
        name: str = "",
        max_window_batch: int = 0,
    ) -> VocoderEngine:
        """Load decoder.json + decoder.bin from `model_dir`; FailedPreconditionError if absent or bad.
        `name` is the name to serve the model under (default: the manifest's, else the folder's);
        `max_window_batch` bounds the windows decoded together."""
        path = Path(model_dir)
        target = torch.device(device)
        generator = load_generator(path).to(target)
        config = generator.config
        info = ModelInfo(
            name=model_name(path, name),
            family=FAMILY,
            revision=weights_revision([path / "decoder.bin"]),
            families=(FAMILY,),
            sample_rate=config.sampling_rate,
            frame_rate=config.sampling_rate / config.samples_per_frame,
            channels=1,
        )
        return cls(generator, target, max_frames, info, max_window_batch)

    @classmethod
    def from_settings(cls, model_dir: Path, settings: VocoderSettings) -> VocoderEngine:
        """`load` with the stage's settings (the family registry's entry point)."""
        return cls.load(
            model_dir,
            settings.device,
            settings.max_frames_cap or DEFAULT_MAX_FRAMES,
            settings.name,
            settings.max_window_batch,
        )

    @property
    def channels(self) -> int:
        """Latent channels per frame (64 for DiffRhythm 2)."""
        return self.generator.config.in_channels

    @property
    def sample_rate(self) -> int:
        """Output sample rate in Hz."""
        return self.generator.config.sampling_rate

    @property
    def samples_per_frame(self) -> int:
        """Samples produced per latent frame (9600 for DiffRhythm 2)."""
        return self.generator.config.samples_per_frame

    def warm_up(self) -> None:
        """Decode one silent window so the first real request does not pay for kernel selection."""
        self.decode_window(np.zeros((WINDOW_FRAMES, self.channels), np.float32))

    def encode_recording(self, data: bytes, token: CancellationToken | None = None) -> np.ndarray:
        """DiffRhythm 2 has no encoder: FailedPreconditionError (its songs cannot be edited or continued)."""
        raise FailedPreconditionError(f"{self.info.name}'s BigVGAN decoder has no encoder")

    def decode_window(self, latents: np.ndarray) -> np.ndarray:
        """Decode one window [frames, channels] into [1, frames * samples_per_frame] samples, in a
        batch with the windows other songs hand in at the same time (alone: a batch of one)."""
        return self.batcher.decode(latents)

    def decode_windows(self, windows: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Decode windows of equal length [frames, channels] as one batch; returns each window's
        audio [1, frames * samples_per_frame] (a decoder whose stages add a sample at the end keeps
        only the first frames * samples_per_frame). The generator treats batch rows independently.
        NaN or infinite output fails the call (INTERNAL) rather than reaching the song."""
        keep = len(windows[0]) * self.samples_per_frame
        batch = torch.from_numpy(np.stack([window.T for window in windows])).to(self.device)
        with torch.inference_mode():
            audio = self.generator(batch)[:, :, :keep].to("cpu", torch.float32).numpy()
        if not np.isfinite(audio).all():
            raise InternalError(
                "the decoder produced NaN or infinite samples; the song stops here instead of returning them"
            )
        if len(windows) == 1:
            return [audio[0]]
        return [audio[index].copy() for index in range(len(windows))]

    def close(self) -> None:
        """Stop the window batcher's thread."""
        self.batcher.close()

    def decode(
        self, latents: np.ndarray, token: CancellationToken | None = None, options: Any = None
    ) -> np.ndarray:
        """The reference one-shot chunked decode of a whole song: [frames, channels] to [1, frames * 9600].

        20-frame windows with hop 15, 2-frame trims at shared edges, the last window aligned to the
        end; a song shorter than 20 frames is decoded as one window. DiffRhythm 2 has no options.
        """
        frames = validate_latents(latents, self.channels)
        if len(frames) > self.max_frames:
            raise InvalidArgumentError(
                "frames", f"{len(frames)} frames is more than the cap of {self.max_frames}"
            )
        spf = self.samples_per_frame
        audio = np.zeros((1, len(frames) * spf), np.float32)
        for paste in WINDOWS.pastes(len(frames)):
            if token is not None:
                token.check()
            window = self.decode_window(frames[paste.start : paste.start + paste.frames])
            begin = (paste.start + paste.keep_from) * spf
            audio[:, begin : begin + (paste.keep_to - paste.keep_from) * spf] = window[
                :, paste.keep_from * spf : paste.keep_to * spf
            ]
        return audio

    def stream(self, token: CancellationToken | None = None) -> StreamingDecoder:
        """A decoder for one song whose latents arrive in pieces; see `StreamingDecoder`."""
        return StreamingDecoder(
            self.decode_window, self.channels, self.samples_per_frame, self.max_frames, WINDOWS, token
        )
