"""MusicGen in the vocoder stage: EnCodec 32 kHz, decoding codes (streamed with 4 frames of look-ahead)
and encoding a recording to continue.

A model folder is a MusicGen checkpoint in the Hugging Face Hub layout: `config.json` with
`model_type` musicgen or musicgen_melody and an `audio_encoder` section, and the weights
(`model.safetensors`, `pytorch_model.bin`, or either sharded with an index).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from services.runtime.families import Family, FamilyCli
from services.runtime.hub_checkpoint import MUSICGEN_MODEL_TYPES, is_hub_model


def _detect(model_dir: Path) -> bool:
    return is_hub_model(model_dir, MUSICGEN_MODEL_TYPES)


def _load(model_dir: Path, settings):
    from services.vocoder.musicgen.engine import MusicgenVocoderEngine

    return MusicgenVocoderEngine.from_settings(model_dir, settings)


def codes_from_file(codes: np.ndarray) -> np.ndarray:
    """A codes file as `songsmith latents generate` writes it, [codebooks, frames], as the engine takes
    it: [frames, codebooks] (dtype kept, so the engine can refuse a non-integer file); ValueError when
    it is not 2-D."""
    array = np.asarray(codes)
    if array.ndim != 2:
        raise ValueError(f"expected a [codebooks, frames] array, got shape {list(array.shape)}")
    return np.ascontiguousarray(array.T)


FAMILY = Family(
    name="musicgen",
    detect=_detect,
    load=_load,
    describe=(
        "config.json with model_type musicgen or musicgen_melody + model.safetensors "
        "(or pytorch_model.bin, or shards)"
    ),
    cli=FamilyCli(from_file=codes_from_file),
)
