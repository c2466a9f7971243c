"""Band-limited resampling with a Hann-windowed sinc filter, computed as torchaudio's
`functional.resample` computes it (the melody chroma's reference resamples with it, rolloff 0.945 and
a 24-zero-crossing filter), in the waveform's own precision so the samples match.

After dividing both rates by their gcd, output sample j of every period of `new` samples is a dot
product of the input with one of `new` filters; one strided conv1d applies them all. A filter is
sinc(pi * base * (i / orig - j / new)) times a Hann window over `width` zero crossings, base being
the lower rate times the rolloff (the filter's cut-off as a fraction of the lower Nyquist).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional


def sinc_kernels(
    orig: int, new: int, zero_crossings: int, rolloff: float, dtype: torch.dtype
) -> tuple[torch.Tensor, int]:
    """The `new` filters [new, 1, 2 * width + orig] for gcd-reduced rates, and the half-width `width`."""
    base = min(orig, new) * rolloff
    width = math.ceil(zero_crossings * orig / base)
    taps = torch.arange(-width, width + orig, dtype=dtype)[None, None] / orig
    phases = torch.arange(0, -new, -1, dtype=dtype)[:, None, None] / new + taps
    phases *= base
    phases = phases.clamp_(-zero_crossings, zero_crossings)
    window = torch.cos(phases * math.pi / zero_crossings / 2) ** 2
    phases *= math.pi
    scale = base / orig
    kernels = torch.where(phases == 0, torch.tensor(1.0).to(phases), phases.sin() / phases)
    kernels *= window * scale
    return kernels, width


def sinc_resample(
    waveform: torch.Tensor, orig_rate: int, new_rate: int, zero_crossings: int = 6, rolloff: float = 0.99
) -> torch.Tensor:
    """`waveform` [..., samples] (floating point) at `orig_rate` resampled to `new_rate`: about
    samples * new / orig samples, rounded up."""
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError("sample rates must be positive")
    if orig_rate == new_rate:
        return waveform
    gcd = math.gcd(orig_rate, new_rate)
    orig, new = orig_rate // gcd, new_rate // gcd
    kernels, width = sinc_kernels(orig, new, zero_crossings, rolloff, waveform.dtype)
    shape = waveform.shape
    flat = waveform.reshape(-1, shape[-1])
    length = flat.shape[-1]
    padded = functional.pad(flat, (width, width + orig))
    output = functional.conv1d(padded[:, None], kernels.to(waveform.device), stride=orig)
    output = output.transpose(1, 2).reshape(flat.shape[0], -1)
    # The length is rounded up in float32, as the reference does (it can differ from an exact ceil).
    target = int(torch.ceil(torch.tensor(new * length / orig, dtype=torch.float32)))
    return output[..., :target].reshape(*shape[:-1], -1)
