"""Reading the weights of a model folder in the Hugging Face Hub layout, for models whose one checkpoint
holds the sub-models of several stages (MusicGen: the T5 encoder, the codebook LM and EnCodec).

The weights are `model.safetensors`, an older `pytorch_model.bin`, or either of them sharded with an
index (`model.safetensors.index.json` / `pytorch_model.bin.index.json` naming the shard of every key).
Each stage reads only the keys under its own prefixes. Pickles open with `weights_only=True`. A stage
then checks the keys it read against its network strictly: a missing, unexpected or misshapen tensor
is an error that names it. torch loads only when weights are read, so family detection stays light.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from services.runtime.errors import FailedPreconditionError
from services.runtime.model_files import read_json

if TYPE_CHECKING:
    import torch

SAFETENSORS = "model.safetensors"
PICKLE = "pytorch_model.bin"
INDEX_SUFFIX = ".index.json"
WEIGHT_FILES = (SAFETENSORS, SAFETENSORS + INDEX_SUFFIX, PICKLE, PICKLE + INDEX_SUFFIX)
SHOWN_KEYS = 8
# The config.json model types of the MusicGen checkpoints (text-only and melody-conditioned).
MUSICGEN_MODEL_TYPES = ("musicgen", "musicgen_melody")


class CheckpointError(FailedPreconditionError):
    """The weights in a model folder do not fit the network its config describes."""


def is_hub_model(model_dir: Path, model_types: Iterable[str]) -> bool:
    """True for a folder whose config.json names one of `model_types` and that holds weights in one
    of the accepted layouts (family detection: nothing is loaded)."""
    config = read_json(model_dir, "config.json")
    has_weights = any((model_dir / name).is_file() for name in WEIGHT_FILES)
    return has_weights and config is not None and config.get("model_type") in tuple(model_types)


def weight_files(model_dir: Path) -> list[Path]:
    """The files holding a model folder's weights, shards in index order (the model's revision is their
    sha256). FailedPreconditionError when the folder has none of the accepted layouts."""
    for name in WEIGHT_FILES:
        path = model_dir / name
        if not path.is_file():
            continue
        if not name.endswith(INDEX_SUFFIX):
            return [path]
        shards = sorted(set(_weight_map(path).values()))
        missing = [shard for shard in shards if not (model_dir / shard).is_file()]
        if missing:
            raise CheckpointError(f"{path} names shards that are not in {model_dir}: {', '.join(missing)}")
        return [model_dir / shard for shard in shards]
    raise CheckpointError(f"no weights in {model_dir}: expected one of {', '.join(WEIGHT_FILES)}")


def _weight_map(index: Path) -> dict[str, str]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{index} is not a shard index with a weight_map ({exc})") from exc
    if not isinstance(weight_map, dict):
        raise CheckpointError(f"{index}: weight_map is not an object")
    return weight_map


def read_tensors(model_dir: Path, prefixes: Iterable[str]) -> dict[str, torch.Tensor]:
    """Every tensor whose key starts with one of `prefixes`, keys unchanged, on the CPU."""
    import torch
    from safetensors import safe_open

    wanted = tuple(prefixes)
    tensors: dict[str, torch.Tensor] = {}
    for path in weight_files(model_dir):
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                    if key.startswith(wanted):
                        tensors[key] = handle.get_tensor(key)
        else:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception as exc:
                raise CheckpointError(f"{path} is not a weights-only PyTorch checkpoint ({exc})") from exc
            if not isinstance(state, Mapping):
                raise CheckpointError(f"{path} does not hold a state dict")
            tensors.update({key: value for key, value in state.items() if key.startswith(wanted)})
    return tensors


def _listing(keys: Iterable[str]) -> str:
    ordered = sorted(keys)
    shown = ordered[:SHOWN_KEYS]
    more = f" (and {len(ordered) - len(shown)} more)" if len(ordered) > len(shown) else ""
    return ", ".join(shown) + more


def check_keys(expected: Mapping[str, tuple[int, ...]], given: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise CheckpointError naming every key of `expected` (key -> shape) that `given` lacks, every
    key `given` has beyond it, and every shape that differs; `what` names the sub-model."""
    problems = []
    missing = expected.keys() - given.keys()
    unexpected = given.keys() - expected.keys()
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    wrong = [
        f"{key} has shape {tuple(given[key].shape)}, expected {tuple(shape)}"
        for key, shape in expected.items()
        if key in given and tuple(given[key].shape) != tuple(shape)
    ]
    problems.extend(wrong[:SHOWN_KEYS])
    if problems:
        raise CheckpointError(
            f"the checkpoint does not match the {what} its config describes: " + "; ".join(problems)
        )
