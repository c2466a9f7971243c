"""The vocoder engine: the loaded decoder plus the reference one-shot decode and the streaming decode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from services.runtime.cancellation import CancellationToken
from services.runtime.errors import InvalidArgumentError
from services.vocoder.diffrhythm2.bigvgan import BigVGANGenerator
from services.vocoder.diffrhythm2.checkpoint import load_generator
from services.vocoder.diffrhythm2.streaming import StreamingDecoder, validate_latents
from services.vocoder.diffrhythm2.windows import reference_pastes

DEFAULT_MAX_FRAMES = 3000


class VocoderEngine:
    """Turns DiffRhythm 2 latents [frames, 64] (5 Hz) into mono float32 audio (48 kHz)."""

    def __init__(self, generator: BigVGANGenerator, device: torch.device, max_frames: int) -> None:
        """Wrap an already loaded generator; use `load` to read a model directory."""
        self.generator = generator
        self.device = device
        self.max_frames = max_frames

    @classmethod
    def load(
        cls, model_dir: str | Path, device: str = "cpu", max_frames: int = DEFAULT_MAX_FRAMES
    ) -> VocoderEngine:
        """Load decoder.json + decoder.bin from `model_dir`; FailedPreconditionError if absent or bad."""
        target = torch.device(device)
        return cls(load_generator(Path(model_dir)).to(target), target, max_frames)

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

    def decode_window(self, latents: np.ndarray) -> np.ndarray:
        """Decode one window [frames, channels] on its own into [frames * samples_per_frame] samples."""
        batch = torch.from_numpy(np.ascontiguousarray(latents.T))[None].to(self.device)
        with torch.inference_mode():
            audio = self.generator(batch)
        return audio[0, 0].to("cpu", torch.float32).numpy()

    def decode(self, latents: np.ndarray, token: CancellationToken | None = None) -> np.ndarray:
        """The reference one-shot chunked decode of a whole song: [frames, channels] to [frames * 9600].

        20-frame windows with hop 15, 2-frame trims at shared edges, the last window aligned to the
        end; a song shorter than 20 frames is decoded as one window.
        """
        frames = validate_latents(latents, self.channels)
        if len(frames) > self.max_frames:
            raise InvalidArgumentError(
                "latents", f"{len(frames)} frames is more than the cap of {self.max_frames}"
            )
        spf = self.samples_per_frame
        audio = np.zeros(len(frames) * spf, np.float32)
        for paste in reference_pastes(len(frames)):
            if token is not None:
                token.check()
            window = self.decode_window(frames[paste.start : paste.start + paste.frames])
            begin = (paste.start + paste.keep_from) * spf
            audio[begin : begin + (paste.keep_to - paste.keep_from) * spf] = window[
                paste.keep_from * spf : paste.keep_to * spf
            ]
        return audio

    def stream(self, token: CancellationToken | None = None) -> StreamingDecoder:
        """A decoder for one song whose latents arrive in pieces; see `StreamingDecoder`."""
        return StreamingDecoder(
            self.decode_window, self.channels, self.samples_per_frame, self.max_frames, token
        )
