"""The reference's last step before writing a song: peak normalisation to 16-bit PCM."""

from __future__ import annotations

import numpy as np
import torch

INT16_PEAK = 32767


def peak_normalize_int16(audio: np.ndarray) -> np.ndarray:
    """A song's float audio [channels, n] as the reference writes it: divided by its peak over all
    channels together (float32), clamped to [-1, 1], times 32767, truncated toward zero to int16.
    Silence (a zero peak, where the reference would divide by zero) stays silence."""
    samples = torch.from_numpy(np.ascontiguousarray(audio, np.float32))
    peak = samples.abs().max() if samples.numel() else torch.tensor(0.0)
    if peak == 0:
        return np.zeros(samples.shape, np.int16)
    return samples.div(peak).clamp(-1, 1).mul(INT16_PEAK).to(torch.int16).numpy()
