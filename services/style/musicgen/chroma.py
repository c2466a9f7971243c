"""The melody conditioning of MusicGen-Melody: a one-hot chroma of a reference recording.

As the reference feature extractor computes it: mono 32 kHz audio, cut to 30 s, zero-padded evenly
to one FFT window when shorter; a power spectrogram (n_fft = window = 16384, periodic Hann, hop
4096, centred with reflect padding, divided by the window's L2 norm, squared magnitude); a 12-bin
chroma filter bank (librosa's construction, tuning 0, starting at C); each frame divided by its
maximum (eps 1e-6); then one-hot on its largest bin. Frames = 1 + samples // 4096.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional

from services.runtime.model_files import read_json

PREPROCESSOR_FILE = "preprocessor_config.json"
# librosa's chroma weighting: a Gaussian over octaves centred at octave 5 with half-width 2.
OCTAVE_CENTER = 5.0
OCTAVE_HALF_WIDTH = 2.0


@dataclass(frozen=True)
class ChromaSettings:
    """The chroma's parameters (the melody checkpoint's `preprocessor_config.json`)."""

    sample_rate: int = 32000
    n_fft: int = 16384
    hop_length: int = 4096
    max_seconds: int = 30
    num_chroma: int = 12

    @classmethod
    def from_model_dir(cls, model_dir: Path) -> ChromaSettings:
        """Read `preprocessor_config.json` where there is one (the defaults are the published values)."""
        config = read_json(model_dir, PREPROCESSOR_FILE) or {}
        defaults = cls()
        return cls(
            sample_rate=int(config.get("sampling_rate", defaults.sample_rate)),
            n_fft=int(config.get("n_fft", defaults.n_fft)),
            hop_length=int(config.get("hop_length", defaults.hop_length)),
            max_seconds=int(config.get("chunk_length", defaults.max_seconds)),
            num_chroma=int(config.get("feature_size", defaults.num_chroma)),
        )


def chroma_filter_bank(sample_rate: int, n_fft: int, num_chroma: int) -> np.ndarray:
    """Weights [num_chroma, n_fft // 2 + 1] projecting an FFT's bins onto pitch classes (float64).

    Each bin's frequency becomes a fractional pitch class (12 per octave from A440 / 16); the bin
    adds to every chroma bin a Gaussian of their circular distance, as wide as the bin's spacing
    in pitch; columns are L2-normalised, weighted by a Gaussian over octaves, and rolled to start at C.
    """
    frequencies = np.linspace(0, sample_rate, n_fft, endpoint=False)[1:]
    pitch = num_chroma * np.log2(frequencies / (440.0 / 16))
    # The 0 Hz bin is placed 1.5 octaves below bin 1.
    pitch = np.concatenate(([pitch[0] - 1.5 * num_chroma], pitch))
    spacing = np.concatenate((np.maximum(pitch[1:] - pitch[:-1], 1.0), [1]))
    distance = np.subtract.outer(pitch, np.arange(0, num_chroma, dtype="d")).T
    half = np.round(float(num_chroma) / 2)
    distance = np.remainder(distance + half + 10 * num_chroma, num_chroma) - half
    weights = np.exp(-0.5 * (2 * distance / np.tile(spacing, (num_chroma, 1))) ** 2)
    weights = weights / np.sum(weights**2, axis=0, keepdims=True) ** 0.5
    octave_weight = np.exp(-0.5 * (((pitch / num_chroma - OCTAVE_CENTER) / OCTAVE_HALF_WIDTH) ** 2))
    weights *= np.tile(octave_weight, (num_chroma, 1))
    weights = np.roll(weights, -3 * (num_chroma // 12), axis=0)
    return np.ascontiguousarray(weights[:, : int(1 + n_fft / 2)])


class ChromaExtractor:
    """Mono samples at the chroma's rate -> one-hot chroma [frames, 12] float32."""

    def __init__(self, settings: ChromaSettings) -> None:
        self.settings = settings
        filters = chroma_filter_bank(settings.sample_rate, settings.n_fft, settings.num_chroma)
        self.filters = torch.from_numpy(filters).float()
        self.window = torch.hann_window(settings.n_fft)

    @property
    def max_samples(self) -> int:
        """Samples the chroma reads at most (the rest of a longer recording is ignored)."""
        return self.settings.max_seconds * self.settings.sample_rate

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """The one-hot chroma of `samples` (float32 [n] at `settings.sample_rate`)."""
        settings = self.settings
        wave = torch.from_numpy(np.ascontiguousarray(samples[: self.max_samples], dtype=np.float32))
        if wave.shape[0] < settings.n_fft:
            pad = settings.n_fft - wave.shape[0]
            wave = functional.pad(wave, (pad // 2, pad // 2 + pad % 2))
        spectrum = torch.stft(
            wave[None],
            n_fft=settings.n_fft,
            hop_length=settings.hop_length,
            win_length=settings.n_fft,
            window=self.window,
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        spectrum /= self.window.pow(2.0).sum().sqrt()
        power = spectrum.abs().pow(2)
        chroma = torch.einsum("cf, ...ft->...ct", self.filters, power)
        chroma = functional.normalize(chroma, p=float("inf"), dim=-2, eps=1e-6)[0].T
        one_hot = torch.zeros_like(chroma)
        one_hot.scatter_(-1, chroma.argmax(-1, keepdim=True), 1.0)
        return one_hot.numpy()
