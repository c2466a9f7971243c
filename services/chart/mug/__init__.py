"""Mug-Diffusion in the chart stage: osu!mania 4-key charts from a song by latent diffusion.

A model folder holds the two files of the released bundle's `models/ckpt/` folder, unchanged:
`model.ckpt` (a Lightning checkpoint; only its `state_dict` is read) and `model.yaml` (the training
config, which names the chart feature list, `configs/mug/mania_beatmap_features.yaml`, a path the
folder also holds relative to itself).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

from services.chart.mug.config import CONFIG_FILE, WEIGHTS_FILE
from services.runtime.families import Family
from services.runtime.model_files import has_files

NAME = "mug"
# Noise levels of the released model's schedule (model.yaml `timesteps`).
PUBLISHED_TIMESTEPS = 1000


def is_mug_config(tree: object) -> bool:
    """True when a parsed model.yaml describes a Mug-Diffusion model (a DDPM with an audio encoder
    and a feature embedder)."""
    try:
        params = tree["model"]["params"]
        return "wave_stage_config" in params and "cond_stage_config" in params and "unet_config" in params
    except (KeyError, TypeError):
        return False


def _detect(model_dir: Path) -> bool:
    if not has_files(model_dir, CONFIG_FILE, WEIGHTS_FILE):
        return False
    try:
        return is_mug_config(yaml.safe_load((model_dir / CONFIG_FILE).read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError):
        return False


def _load(model_dir: Path, settings):
    from services.chart.mug.engine import MugChartEngine

    return MugChartEngine.load(model_dir, settings)


@lru_cache(maxsize=1)
def _published_prompt():
    from services.chart.mug.features import PUBLISHED_FEATURES, FeaturePrompt

    return FeaturePrompt.load(PUBLISHED_FEATURES)


def check_chart_request(request, field_prefix: str, max_count: int) -> None:
    """Check a ChartRequest's settings and prompt (not its audio) as the released model would, without
    loading one: its 1000 noise levels and the published feature list. The gateway runs it before it
    accepts a song; the stage checks again against its own model. InvalidArgumentError naming
    `<field_prefix>.<field>`."""
    from services.chart.mug.engine import check_request

    check_request(request, _published_prompt(), PUBLISHED_TIMESTEPS, max_count, field_prefix)


FAMILY = Family(
    name=NAME,
    detect=_detect,
    load=_load,
    describe=f"{WEIGHTS_FILE} + {CONFIG_FILE} (Mug-Diffusion)",
    check_input=check_chart_request,
)
