"""DiffRhythm 2 in the vocoder stage: the BigVGAN-v2 decoder and its streaming windows.

A model folder holds `decoder.bin` (the generator's weights) and `decoder.json` (its hyperparameters).
"""

from __future__ import annotations

from pathlib import Path

from services.runtime.families import Family
from services.runtime.model_files import has_files


def _detect(model_dir: Path) -> bool:
    return has_files(model_dir, "decoder.bin", "decoder.json")


def _load(model_dir: Path, settings):
    from services.vocoder.diffrhythm2.engine import VocoderEngine

    return VocoderEngine.from_settings(model_dir, settings)


FAMILY = Family(name="diffrhythm2", detect=_detect, load=_load, describe="decoder.bin + decoder.json")
