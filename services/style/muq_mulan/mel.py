"""MuQ's front end: a dB mel spectrogram of 24 kHz audio, normalised with MuQ's statistics.

MuQ computes it with torchaudio's `MelSpectrogram` and `AmplitudeToDB`; torchaudio has no CPU build
here, so this module re-creates both from their definitions with `torch.stft`: a periodic Hann window
of n_fft samples, centred frames with reflect padding, the power spectrum, a triangular HTK mel
filterbank without area normalisation, then 10*log10(max(x, 1e-10)). MuQ drops the last frame so that
T samples give T // hop frames.
"""

from __future__ import annotations

import math

import torch
from torch import nn

SAMPLE_RATE = 24_000
N_FFT = 2048
AMPLITUDE_FLOOR = 1e-10


def hz_to_mel(hz: float) -> float:
    """HTK mel scale: 2595 * log10(1 + f / 700)."""
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def htk_mel_filterbank(n_freqs: int, n_mels: int, sample_rate: int, f_min: float = 0.0) -> torch.Tensor:
    """Triangular HTK filters as a [n_freqs, n_mels] matrix over `n_freqs` rFFT bins up to Nyquist."""
    f_max = sample_rate / 2
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    mel_points = torch.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2)
    hz_points = 700.0 * (10.0 ** (mel_points / 2595.0) - 1.0)
    widths = hz_points[1:] - hz_points[:-1]
    slopes = hz_points.unsqueeze(0) - all_freqs.unsqueeze(1)
    rising = -slopes[:, :-2] / widths[:-1]
    falling = slopes[:, 2:] / widths[1:]
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


class MelFrontEnd(nn.Module):
    """Waveform [B, T] at 24 kHz -> normalised dB mel [B, n_mels, T // hop] as MuQ's encoder sees it."""

    def __init__(self, hop_length: int, n_mels: int, mean: float, std: float) -> None:
        super().__init__()
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.mean = mean
        self.std = std
        self.register_buffer("window", torch.empty(N_FFT), persistent=False)
        self.register_buffer("filterbank", torch.empty(N_FFT // 2 + 1, n_mels), persistent=False)
        self.reset_buffers()

    def reset_buffers(self) -> None:
        """(Re)compute the window and the filterbank (they are not stored in checkpoints), on CPU."""
        self.window = torch.hann_window(N_FFT, periodic=True)
        self.filterbank = htk_mel_filterbank(N_FFT // 2 + 1, self.n_mels, SAMPLE_RATE)

    def decibels(self, wave: torch.Tensor) -> torch.Tensor:
        """The dB mel power spectrogram [B, n_mels, T // hop] (last frame dropped), in float32."""
        spectrum = torch.stft(
            wave.float(),
            n_fft=N_FFT,
            hop_length=self.hop_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        power = spectrum.abs().pow(2)
        mel = torch.matmul(power.transpose(-1, -2), self.filterbank).transpose(-1, -2)
        return 10.0 * torch.log10(torch.clamp(mel, min=AMPLITUDE_FLOOR))[..., :-1]

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """The normalised mel, (dB - mean) / std, that MuQ's conv subsampling consumes."""
        return (self.decibels(wave) - self.mean) / self.std
