"""MuQ-MuLan in the style stage: the 512-d joint music/text space DiffRhythm 2 and v1 are conditioned on.

A model folder is a MuQ-MuLan checkpoint folder: `config.json` with a `mulan` section, and
`model.safetensors` or `pytorch_model.bin`.
"""

from __future__ import annotations

from pathlib import Path

from services.runtime.families import Family
from services.runtime.model_files import read_json


def _detect(model_dir: Path) -> bool:
    config = read_json(model_dir, "config.json")
    return config is not None and "mulan" in config


def _load(model_dir: Path, settings):
    from services.style.muq_mulan.engine import StyleEngine

    return StyleEngine.from_settings(model_dir, settings)


FAMILY = Family(name="muq-mulan", detect=_detect, load=_load, describe="config.json with a mulan section")
