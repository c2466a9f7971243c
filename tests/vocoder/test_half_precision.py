"""A decoder.bin stored in bf16 or fp16 decodes like the reference, which builds its network in float32,
loads the half-precision values into it and only then fuses the weight-norm pairs (issue 18, item 12)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from services.vocoder.diffrhythm2.engine import VocoderEngine


def _copy_with_dtype(
    fixture_dir: Path, target: Path, dtype: torch.dtype, then: torch.dtype | None = None
) -> Path:
    """The fixture decoder with every tensor cast to `dtype` (and, with `then`, cast again to `then`)."""
    target.mkdir()
    shutil.copy(fixture_dir / "decoder.json", target / "decoder.json")
    state = torch.load(fixture_dir / "decoder.bin", weights_only=True)["generator"]
    cast = {
        key: value.to(dtype) if then is None else value.to(dtype).to(then) for key, value in state.items()
    }
    torch.save({"generator": cast}, target / "decoder.bin")
    return target


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_half_precision_file_decodes_as_its_float32_upcast(
    fixture_dir: Path, tmp_path: Path, reference_latents: np.ndarray, dtype: torch.dtype
) -> None:
    half = VocoderEngine.load(_copy_with_dtype(fixture_dir, tmp_path / "half", dtype))
    upcast = VocoderEngine.load(_copy_with_dtype(fixture_dir, tmp_path / "upcast", dtype, torch.float32))
    assert all(p.dtype == torch.float32 for p in half.generator.parameters())
    audio, expected = half.decode(reference_latents[:20]), upcast.decode(reference_latents[:20])
    assert audio.dtype == np.float32
    assert np.abs(audio - expected).max() <= 1e-6
