"""The S4 kernel: its state-space algebra, the reference's naive Cauchy sum, and the length state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.chart.mug.s4 import S4Layer, StateSpaceKernel, _conjugate_pairs


@pytest.fixture(scope="module")
def kernel(engine) -> StateSpaceKernel:
    """The fixture's deepest decoder S4 layer (stored length 512)."""
    layers = [m for m in engine.model.unet_model.modules() if isinstance(m, S4Layer)]
    return layers[-1].s4_model.kernel.kernel


def _full_sum_kernel(kernel: StateSpaceKernel, length: int) -> torch.Tensor:
    """The published S4's kernel (conjugate modes included), in float64, from our extended state."""
    c, internal = kernel.state_for_length(length)
    w, b, p, dt = kernel._parameters_for_channels()
    omega = torch.tensor(np.exp(-2j * np.pi / internal), dtype=torch.complex128) ** torch.arange(
        internal // 2 + 1
    )
    z = 2 * (1 - omega) / (1 + omega)
    w = (w * dt.unsqueeze(-1)).to(torch.complex128)
    v = torch.cat([b, p]).unsqueeze(1) * torch.cat([c, p.conj()]).unsqueeze(0)
    v = v.to(torch.complex128)
    r = (v.unsqueeze(-1) / (z - w.unsqueeze(-1)) + v.conj().unsqueeze(-1) / (z - w.conj().unsqueeze(-1))).sum(
        -2
    )
    r = r * dt.double()[None, None, :, None]
    spectrum = (r[:-1, :-1] - r[:-1, -1:] * r[-1:, :-1] / (1 + r[-1:, -1:])) * 2 / (1 + omega)
    return torch.fft.irfft(spectrum, n=internal)[0, 0, :, :length]


def test_transition_is_the_bilinear_discretisation(kernel: StateSpaceKernel) -> None:
    with torch.no_grad():
        stepped = kernel._transition().to(torch.complex128)
        w, _, p, dt = kernel._parameters_for_channels()
        w_full, p_full = _conjugate_pairs(w).to(torch.complex128), _conjugate_pairs(p[0]).to(torch.complex128)
        a = torch.diag_embed(w_full) - p_full.unsqueeze(-1) * p_full.conj().unsqueeze(-2)
        eye = torch.eye(a.shape[-1], dtype=torch.complex128)
        half = dt.double()[:, None, None] / 2
        direct = torch.linalg.solve(eye - half * a, eye + half * a)
    assert (stepped - direct).abs().max() <= 1e-5


def test_doubling_extends_the_state_exactly(kernel: StateSpaceKernel) -> None:
    """With conjugate modes summed, the doubled state's first taps are the original kernel: the
    extension of C is right. The reference's naive sum (ours) omits them, so its kernel changes."""
    internal = int(kernel.L)
    with torch.no_grad():
        assert kernel.state_for_length(internal + 1)[1] == 2 * internal
        assert kernel.state_for_length(3 * internal)[1] == 4 * internal
        full = _full_sum_kernel(kernel, internal)
        doubled = _full_sum_kernel(kernel, 2 * internal)[:, :internal]
        assert (full - doubled).abs().max() <= 1e-5 * full.abs().max()
        naive = kernel.kernel(internal)
        assert not torch.allclose(naive, kernel.kernel(2 * internal)[:, :internal], atol=1e-3)


def test_kernel_is_built_at_the_stored_length_and_truncated(kernel: StateSpaceKernel) -> None:
    with torch.no_grad():
        short = kernel.kernel(32)
        whole = kernel.kernel(int(kernel.L))
    assert short.shape == (kernel.channels, 32)
    torch.testing.assert_close(short, whole[:, :32], rtol=0, atol=0)


def test_a_layer_stored_at_length_zero_is_set_up_at_the_sequence_length(kernel: StateSpaceKernel) -> None:
    """Stored L = 0 means C is the raw output matrix: it is set up as C (I - dA^L) at the first
    sequence length, whose kernel is the first taps of any longer set-up."""
    fresh = StateSpaceKernel(kernel.channels)
    fresh.load_state_dict(kernel.state_dict())
    fresh.L.zero_()
    with torch.no_grad():
        c, internal = fresh.state_for_length(96)
        short = _full_sum_kernel(fresh, 96)
        longer = _full_sum_kernel(fresh, 192)[:, :96]
    assert internal == 96 and not torch.equal(c, torch.view_as_complex(kernel.C))
    assert (short - longer).abs().max() <= 1e-5 * short.abs().max()


def test_cached_spectrum_gives_the_same_layer_output(engine) -> None:
    layer = next(m for m in engine.model.unet_model.modules() if isinstance(m, S4Layer))
    x = torch.randn(3, layer.norm.num_channels, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(layer(x, layer.kernel_spectrum(32)), layer(x), rtol=0, atol=0)
