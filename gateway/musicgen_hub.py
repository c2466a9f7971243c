"""The published MusicGen checkpoints on the Hugging Face Hub, as data for `songsmith models pull`.

Every repository is in the transformers layout: one folder serves the style stage (T5 and its
tokenizer, the melody chroma settings), the generation stage (the LM) and the vocoder (EnCodec).
The weights are `model.safetensors`, or shards with an index for the bigger models, or an older
`pytorch_model.bin`; `select_weight_files` picks them from the repository's file listing, so a pull
needs no list of shard names. AudioCraft's own `state_dict.bin` / `compression_state_dict.bin`, which
some repositories also carry, are not needed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

CONFIG_FILES = ("config.json", "generation_config.json", "preprocessor_config.json")
TOKENIZER_FILES = ("spiece.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
SAFETENSORS_SHARD = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")
PICKLE_SHARD = re.compile(r"^pytorch_model-\d{5}-of-\d{5}\.bin$")


@dataclass(frozen=True)
class HubModel:
    """One published checkpoint: the name Songsmith serves it under, its repository, its model type
    (musicgen or musicgen_melody) and audio channels, and the files besides the weights."""

    name: str
    repo_id: str
    model_type: str
    channels: int
    files: tuple[str, ...] = CONFIG_FILES + TOKENIZER_FILES

    @property
    def melody(self) -> bool:
        """True for melody-conditioned checkpoints (they also take a reference recording)."""
        return self.model_type == "musicgen_melody"


def _hub_model(name: str, model_type: str = "musicgen", channels: int = 1) -> HubModel:
    return HubModel(name, f"facebook/{name}", model_type, channels)


HUB_MODELS: dict[str, HubModel] = {
    model.name: model
    for model in (
        _hub_model("musicgen-small"),
        _hub_model("musicgen-medium"),
        _hub_model("musicgen-large"),
        _hub_model("musicgen-melody", "musicgen_melody"),
        _hub_model("musicgen-melody-large", "musicgen_melody"),
        _hub_model("musicgen-stereo-small", channels=2),
        _hub_model("musicgen-stereo-medium", channels=2),
        _hub_model("musicgen-stereo-large", channels=2),
        _hub_model("musicgen-stereo-melody", "musicgen_melody", 2),
        _hub_model("musicgen-stereo-melody-large", "musicgen_melody", 2),
    )
}


def select_weight_files(listed: Iterable[str]) -> tuple[str, ...]:
    """The weight files to download among a repository's files, in the order the loaders prefer:
    model.safetensors; else its index and shards; else pytorch_model.bin; else its index and shards.
    ValueError when the listing holds none of them."""
    names = set(listed)
    if "model.safetensors" in names:
        return ("model.safetensors",)
    if "model.safetensors.index.json" in names:
        return ("model.safetensors.index.json", *sorted(n for n in names if SAFETENSORS_SHARD.match(n)))
    if "pytorch_model.bin" in names:
        return ("pytorch_model.bin",)
    if "pytorch_model.bin.index.json" in names:
        return ("pytorch_model.bin.index.json", *sorted(n for n in names if PICKLE_SHARD.match(n)))
    raise ValueError("the repository lists no model.safetensors, pytorch_model.bin or shard index")
