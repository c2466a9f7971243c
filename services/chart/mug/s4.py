"""The UNet's S4 layers: a causal long convolution whose kernel comes from a state-space model.

Each layer stores the diagonal-plus-low-rank state space of the published S4 (N' = 32 stored modes of
a 64-dimensional state, as conjugate pairs; rank-1 correction), complex tensors saved as real
[..., 2] pairs, and an int64 buffer `L`: the kernel length the layer was last set up for.

The kernel is computed as the reference computes it on CPU: the resolvent at the FFT nodes of the
internal length L_int by a naive Cauchy sum over the stored modes only (no conjugate partners,
unlike the published S4), a Woodbury correction, the bilinear factor 2 / (1 + omega), an inverse
real FFT of length L_int, and the first L taps. A sequence longer than L_int first extends the
state: C becomes (I + dA^L_int) C and L_int doubles until it covers the sequence (a stored L of 0 is
set up at the sequence length with I - dA^L). The reference keeps that change for the rest of its
process; here the kernel of a length is a pure function of the checkpoint and the length (what a fresh
reference process computes), so requests never influence each other.

The kernel depends only on the weights and the length, so `kernel_spectrum` is computed once per
length and reused at every sampler step.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from services.chart.mug.layers import group_norm

STATE_MODES = 32
RANK = 1


def _conjugate_pairs(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, x.conj()], dim=-1)


def _matrix_power(exponent: int, matrix: torch.Tensor) -> torch.Tensor:
    """matrix ** exponent by repeated squaring, multiplying in the reference's order."""
    result = torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device)
    powers = [matrix]
    while True:
        if exponent % 2 == 1:
            result = powers[-1] @ result
        exponent //= 2
        if exponent == 0:
            return result
        powers.append(powers[-1] @ powers[-1])


class StateSpaceKernel(nn.Module):
    """The stored state space of one S4 layer and the convolution kernel it generates."""

    def __init__(self, channels: int, modes: int = STATE_MODES, ssm_copies: int | None = None) -> None:
        super().__init__()
        copies = ssm_copies or channels
        self.channels = channels
        self.register_buffer("C", torch.zeros(1, channels, modes, 2))
        self.register_buffer("log_dt", torch.zeros(channels))
        self.register_buffer("B", torch.zeros(1, copies, modes, 2))
        self.register_buffer("P", torch.zeros(RANK, copies, modes, 2))
        self.register_buffer("inv_w_real", torch.zeros(copies, modes))
        self.register_buffer("w_imag", torch.zeros(copies, modes))
        self.register_buffer("L", torch.tensor(0, dtype=torch.int64))

    def _parameters_for_channels(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """w [H, N], B [1, H, N], P [1, H, N], dt [H]: the SSM copies repeated over the channels."""
        repeat = self.channels // self.inv_w_real.shape[0]
        w = -torch.exp(self.inv_w_real) + 1j * self.w_imag
        b = torch.view_as_complex(self.B)
        p = torch.view_as_complex(self.P)
        return w.repeat(repeat, 1), b.repeat(1, repeat, 1), p.repeat(1, repeat, 1), torch.exp(self.log_dt)

    def _transition(self) -> torch.Tensor:
        """dA [H, 2N, 2N]: the bilinear discretisation of A = diag(w) - P P^H, built by stepping the
        identity through the rank-1 Woodbury update as the reference does."""
        w, _, p, dt = self._parameters_for_channels()
        q = p.conj()
        d = (2.0 / dt.unsqueeze(-1) - w).reciprocal()
        r = torch.eye(RANK, dtype=w.dtype) + 2 * torch.einsum("rhn,hn,shn->hrs", q, d, p).real
        r = torch.linalg.solve(r, (q * d).transpose(0, 1)).transpose(0, 1)
        e = 2.0 / dt.unsqueeze(-1) + w
        d, e, r, p, q = (_conjugate_pairs(x) for x in (d, e, r, p, q))
        size = 2 * w.shape[-1]
        state = torch.eye(size, dtype=w.dtype).unsqueeze(-2).expand(size, w.shape[0], size)
        stepped = e * state - torch.einsum("rhn,rhm,...hm->...hn", p, q, state)
        stepped = d * (stepped - torch.einsum("rhn,rhm,...hm->...hn", p, r, stepped))
        return stepped.permute(1, 2, 0)

    def _extended_c(self, c: torch.Tensor, steps: int, doubling: bool) -> torch.Tensor:
        """C after extending the kernel: (I + dA^steps) C when doubling, (I - dA^steps) C when setting
        up a layer whose stored length is 0."""
        power = _matrix_power(steps, self._transition())
        full = _conjugate_pairs(c)
        product = torch.einsum("hmn,chn->chm", power.transpose(-1, -2), full)
        extended = full + product if doubling else full - product
        return extended[..., : c.shape[-1]]

    def state_for_length(self, length: int) -> tuple[torch.Tensor, int]:
        """(C, L_int): the output matrix and internal length a fresh reference process has after a
        first call on a sequence of `length`."""
        c = torch.view_as_complex(self.C)
        internal = int(self.L.item())
        while length > internal:
            if internal == 0:
                c, internal = self._extended_c(c, length, doubling=False), length
            else:
                c, internal = self._extended_c(c, internal, doubling=True), 2 * internal
        return c, internal

    def kernel(self, length: int) -> torch.Tensor:
        """The first `length` taps of the convolution kernel, [H, length] float32."""
        c, internal = self.state_for_length(length)
        w, b, p, dt = self._parameters_for_channels()
        q = p.conj()
        omega = torch.tensor(np.exp(-2j * np.pi / internal), dtype=w.dtype) ** torch.arange(internal // 2 + 1)
        z = 2 * (1 - omega) / (1 + omega)
        w = w * dt.unsqueeze(-1)
        inputs = torch.cat([b, p], dim=0)
        outputs = torch.cat([c, q], dim=0)
        products = inputs.unsqueeze(1) * outputs.unsqueeze(0)
        # The naive Cauchy sum over the stored modes: sum_n v[n] / (z - w[n]), as products with the
        # reciprocals so that the four (input, output) pairs share one set of divisions.
        resolvent = torch.einsum("ijhn,hnl->ijhl", products, (z - w.unsqueeze(-1)).reciprocal())
        resolvent = resolvent * dt[None, None, :, None]
        spectrum = resolvent[:-1, :-1] - resolvent[:-1, -1:] * resolvent[-1:, :-1] / (1 + resolvent[-1:, -1:])
        spectrum = spectrum * 2 / (1 + omega)
        return torch.fft.irfft(spectrum, n=internal)[0, 0, :, :length]


class S4Convolution(nn.Module):
    """y = GLU(conv1x1(GELU(K * u + D u))): the S4 sequence map with its pointwise output."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.D = nn.Parameter(torch.zeros(1, channels))
        # The published keys nest the kernel twice (`kernel.kernel.*`).
        self.kernel = nn.Module()
        self.kernel.kernel = StateSpaceKernel(channels)
        self.output_linear = nn.Sequential(nn.Conv1d(channels, 2 * channels, 1))

    def kernel_spectrum(self, length: int) -> torch.Tensor:
        """rfft of the kernel zero-padded to 2 * length (what the convolution multiplies), [H, length + 1]."""
        return torch.fft.rfft(self.kernel.kernel.kernel(length), n=2 * length)

    def forward(self, u: torch.Tensor, spectrum: torch.Tensor | None = None) -> torch.Tensor:
        """u [batch, H, L] -> [batch, H, L]; `spectrum` is `kernel_spectrum(L)` (computed when None)."""
        length = u.shape[-1]
        if spectrum is None:
            spectrum = self.kernel_spectrum(length)
        y = torch.fft.irfft(torch.fft.rfft(u, n=2 * length) * spectrum, n=2 * length)[..., :length]
        y = y + u * self.D[0, :, None]
        return functional.glu(self.output_linear(functional.gelu(y)), dim=-2)


class S4Layer(nn.Module):
    """x + conv_k3(S4(GroupNorm(x)))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.s4_model = S4Convolution(channels)
        self.out_layer = nn.Conv1d(channels, channels, 3, padding=1)

    def kernel_spectrum(self, length: int) -> torch.Tensor:
        """The S4 kernel's spectrum for sequences of `length` (see S4Convolution.kernel_spectrum)."""
        return self.s4_model.kernel_spectrum(length)

    def forward(self, x: torch.Tensor, spectrum: torch.Tensor | None = None) -> torch.Tensor:
        """[batch, H, L] -> [batch, H, L]."""
        return x + self.out_layer(self.s4_model(self.norm(x), spectrum))
