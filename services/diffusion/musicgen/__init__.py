"""MusicGen in the generation stage: the codebook LM, its sampling loop and extended generation.

A model folder is a MusicGen checkpoint in the Hugging Face Hub layout: `config.json` with
`model_type` musicgen or musicgen_melody, and the weights (`model.safetensors`, `pytorch_model.bin`, or
either sharded with an index). The same folder serves the style stage (T5) and the vocoder (EnCodec).
"""

from __future__ import annotations

from pathlib import Path

from services.diffusion.musicgen.options import (
    add_arguments,
    codes_to_file,
    options_from_arguments,
    parse_options,
)
from services.runtime.families import Family, FamilyCli
from services.runtime.hub_checkpoint import MUSICGEN_MODEL_TYPES, is_hub_model


def _detect(model_dir: Path) -> bool:
    return is_hub_model(model_dir, MUSICGEN_MODEL_TYPES)


def _load(model_dir: Path, settings):
    from services.diffusion.musicgen.engine import MusicgenEngine

    return MusicgenEngine.from_settings(model_dir, settings)


FAMILY = Family(
    name="musicgen",
    detect=_detect,
    load=_load,
    describe=(
        "config.json with model_type musicgen or musicgen_melody + model.safetensors "
        "(or pytorch_model.bin, or shards)"
    ),
    options_field="musicgen",
    parse_options=parse_options,
    cli=FamilyCli(add_arguments=add_arguments, options=options_from_arguments, to_file=codes_to_file),
    companions={"style": ".", "vocoder": "."},
)
