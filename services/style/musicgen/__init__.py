"""MusicGen in the style stage: the T5 encoder's states for a prompt, and the one-hot chroma of a melody
recording for melody models.

A model folder is a MusicGen checkpoint in the Hugging Face Hub layout: `config.json` with
`model_type` musicgen or musicgen_melody and a `text_encoder` section, the weights
(`model.safetensors`, `pytorch_model.bin`, or either sharded with an index), the T5 tokenizer
(`tokenizer.json`) and, for melody models, `preprocessor_config.json` (the chroma's settings).
"""

from __future__ import annotations

from pathlib import Path

from services.runtime.families import Family
from services.runtime.hub_checkpoint import MUSICGEN_MODEL_TYPES, is_hub_model


def _detect(model_dir: Path) -> bool:
    return is_hub_model(model_dir, MUSICGEN_MODEL_TYPES)


def _load(model_dir: Path, settings):
    from services.style.musicgen.engine import MusicgenStyleEngine

    return MusicgenStyleEngine.from_settings(model_dir, settings)


FAMILY = Family(
    name="musicgen",
    detect=_detect,
    load=_load,
    describe=(
        "config.json with model_type musicgen or musicgen_melody + model.safetensors "
        "(or pytorch_model.bin, or shards) + tokenizer.json"
    ),
)
