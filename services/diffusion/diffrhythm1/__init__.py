"""DiffRhythm v1 in the generation stage: the DiT and the CFM sampler over the whole song.

A model folder holds `cfm_model.pt` (base: `ASLP-lab/DiffRhythm-1_2`, 95 s; full:
`ASLP-lab/DiffRhythm-1_2-full`, 96..285 s; the checkpoint's keys say which), the repo's
`config.json` (`"model_type": "diffrhythm"`) and `negative_style.npy`. Its style recording is
embedded as the reference does: the 10 s around the middle.
"""

from __future__ import annotations

from pathlib import Path

from services.diffusion.diffrhythm1.options import parse_options
from services.runtime.families import Family
from services.runtime.model_files import has_files, read_json


def _detect(model_dir: Path) -> bool:
    config = read_json(model_dir, "config.json")
    return (
        has_files(model_dir, "cfm_model.pt")
        and config is not None
        and config.get("model_type") == "diffrhythm"
    )


def _load(model_dir: Path, settings):
    from services.diffusion.diffrhythm1.engine import DiffRhythm1Engine

    return DiffRhythm1Engine.from_settings(model_dir, settings)


FAMILY = Family(
    name="diffrhythm1",
    detect=_detect,
    load=_load,
    describe='cfm_model.pt + config.json with "model_type": "diffrhythm"',
    options_field="diffrhythm1",
    parse_options=parse_options,
    companions={"tokenizer": "", "style": "muq-mulan", "vocoder": "."},
    style_crop="middle",
)
