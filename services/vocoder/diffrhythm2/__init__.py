"""DiffRhythm 2 in the vocoder stage: the BigVGAN-v2 decoder and its streaming windows.

A model folder holds `decoder.bin` (the generator's weights) and `decoder.json` (its hyperparameters).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from services.runtime.families import Family, FamilyCli
from services.runtime.model_files import has_files


def _detect(model_dir: Path) -> bool:
    return has_files(model_dir, "decoder.bin", "decoder.json")


def _load(model_dir: Path, settings):
    from services.vocoder.diffrhythm2.engine import VocoderEngine

    return VocoderEngine.from_settings(model_dir, settings)


def _mono_samples(audio: np.ndarray) -> np.ndarray:
    """DiffRhythm 2's decode is written as one mono [samples] array, as the reference returns it."""
    return audio[0]


def _float32_latents(latents: np.ndarray) -> np.ndarray:
    """Latents read from a file, in the float32 the decoder takes (other float widths are cast)."""
    return latents.astype(np.float32) if np.issubdtype(latents.dtype, np.floating) else latents


FAMILY = Family(
    name="diffrhythm2",
    detect=_detect,
    load=_load,
    describe="decoder.bin + decoder.json",
    cli=FamilyCli(to_file=_mono_samples, from_file=_float32_latents),
)
