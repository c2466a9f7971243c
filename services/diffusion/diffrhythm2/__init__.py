"""DiffRhythm 2 in the generation stage: the DiT and the block flow matching sampler.

A model folder holds `model.safetensors` and `config.json` (or the older name `model.json`) with
the DiT's hyperparameters (no `model_type` key, which other families' configs carry).
"""

from __future__ import annotations

from pathlib import Path

from services.runtime.families import Family
from services.runtime.model_files import has_files, read_json


def _detect(model_dir: Path) -> bool:
    config = read_json(model_dir, "config.json", "model.json")
    return has_files(model_dir, "model.safetensors") and config is not None and "model_type" not in config


def _load(model_dir: Path, settings):
    from services.diffusion.diffrhythm2.engine import DiffusionEngine

    return DiffusionEngine.from_settings(model_dir, settings)


FAMILY = Family(
    name="diffrhythm2",
    detect=_detect,
    load=_load,
    describe="model.safetensors + config.json (or model.json)",
    companions={"tokenizer": "", "style": "muq-mulan", "vocoder": "."},
)
