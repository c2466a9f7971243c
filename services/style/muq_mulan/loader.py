"""Load a MuQ-MuLan checkpoint folder in its published layout, strictly.

The checkpoint folder holds `config.json` and `model.safetensors` (or `pytorch_model.bin`). Its config
names an audio sub-model (MuQ) and a text sub-model (XLM-R); they supply only configs and the
tokenizer, because every weight comes from the MuLan file. A name is looked up first as a folder
beside the checkpoint folder, then as a Hugging Face repo id in the local hub cache (never online).
Unlike the reference, which loads with strict=False, a missing or unexpected tensor is an error.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import snapshot_download
from safetensors.torch import load_file
from tokenizers import Tokenizer
from transformers import XLMRobertaConfig

from services.runtime.errors import FailedPreconditionError
from services.style.muq_mulan.mulan import MuLanConfig, MuQMuLan
from services.style.muq_mulan.muq import MuQConfig

CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILE = "tokenizer.json"

# Tensors the published checkpoint carries that inference never reads: MuQ's pretraining head,
# quantizer and cls token, the conformer's positional conv (its forward never calls it; weight-norm
# tensors under either torch naming), MuLan's aggregator and loss temperature, XLM-R's pooler and
# position/token-type buffers that older transformers versions saved.
UNUSED_PREFIXES = (
    "mulan.audio.aggregator.",
    "mulan.audio.model.model.linear.",
    "mulan.audio.model.model.cls_token",
    "mulan.audio.model.model.quantizer_",
    "mulan.audio.model.model.conformer.pos_conv_embed.",
    "mulan.contrast.",
    "mulan.text.model.pooler.",
    "mulan.text.model.embeddings.position_ids",
    "mulan.text.model.embeddings.token_type_ids",
)
OPTIONAL_SUFFIXES = (".num_batches_tracked",)


class ModelLoadError(FailedPreconditionError):
    """The model folder is missing, incomplete or does not match the architecture."""


@dataclass(frozen=True)
class SubModel:
    """A resolved sub-model: its name in config.json and the folder it was found in."""

    name: str
    path: Path


@dataclass
class LoadedModel:
    """Everything inference needs: the network (eval mode), its tokenizer and where parts came from."""

    model: MuQMuLan
    tokenizer: Tokenizer
    pad_id: int
    max_tokens: int
    checkpoint_dir: Path
    weights_file: Path
    audio_model: SubModel
    text_model: SubModel


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{path} is missing") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} does not hold a JSON object")
    return data


def resolve_sub_model(name: str, checkpoint_dir: Path, hub_cache_dir: str | None = None) -> SubModel:
    """Find the folder of a sub-model named in config.json: `checkpoint_dir/../name` first, then the
    snapshot of repo id `name` in the huggingface_hub cache (`hub_cache_dir`, else $HF_HUB_CACHE, else
    the default), local files only."""
    beside = checkpoint_dir.parent / name
    if (beside / CONFIG_FILE).is_file():
        return SubModel(name, beside)
    cache_dir = hub_cache_dir or os.environ.get("HF_HUB_CACHE") or None
    try:
        snapshot = Path(snapshot_download(name, cache_dir=cache_dir, local_files_only=True))
    except Exception as exc:  # any lookup failure means "not installed"
        where = cache_dir or "the default huggingface_hub cache"
        raise ModelLoadError(
            f"sub-model {name!r} not found: no {beside / CONFIG_FILE}, and not in {where} "
            f"({type(exc).__name__}); install it beside the checkpoint folder or in the hub cache"
        ) from exc
    if not (snapshot / CONFIG_FILE).is_file():
        raise ModelLoadError(f"sub-model {name!r}: {snapshot / CONFIG_FILE} is missing")
    return SubModel(name, snapshot)


def _weights_path(checkpoint_dir: Path) -> Path:
    for name in WEIGHT_FILES:
        if (checkpoint_dir / name).is_file():
            return checkpoint_dir / name
    raise ModelLoadError(f"{checkpoint_dir} holds neither {' nor '.join(WEIGHT_FILES)}")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors or torch.save file (tensors only: `weights_only` loading)."""
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt files raise many different types
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{path} does not hold a flat state dict of tensors")
    return state


def check_keys(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> None:
    """Raise ModelLoadError naming every missing, unexpected or mis-shaped tensor."""
    missing = sorted(k for k in expected if k not in found and not k.endswith(OPTIONAL_SUFFIXES))
    unexpected = sorted(k for k in found if k not in expected and not k.startswith(UNUSED_PREFIXES))
    mis_shaped = sorted(
        f"{k} {tuple(found[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in found and found[k].shape != v.shape
    )
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mis_shaped)):
        if keys:
            shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
            problems.append(f"{len(keys)} {label} tensor(s): {shown}")
    if problems:
        raise ModelLoadError("checkpoint does not match MuQ-MuLan: " + "; ".join(problems))


def load_tokenizer(text_dir: Path) -> Tokenizer:
    """The XLM-R fast tokenizer exactly as saved in tokenizer.json (normaliser included)."""
    path = text_dir / TOKENIZER_FILE
    if not path.is_file():
        raise ModelLoadError(f"text sub-model: {path} is missing")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # the tokenizers library raises plain Exception
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def _materialize_derived_buffers(model: MuQMuLan) -> None:
    """Fill the buffers that checkpoints do not store (the model is built on the meta device so that
    no time goes into random initialisation): the mel window and filterbank, XLM-R's position and
    token-type id tables."""
    model.mulan.audio.model.model.front_end.reset_buffers()
    embeddings = model.mulan.text.model.embeddings
    positions = torch.arange(embeddings.position_embeddings.num_embeddings).expand((1, -1))
    embeddings.position_ids = positions
    embeddings.token_type_ids = torch.zeros(positions.shape, dtype=torch.long)
    left = [name for name, tensor in (*model.named_parameters(), *model.named_buffers()) if tensor.is_meta]
    if left:
        raise ModelLoadError(f"internal: tensors left uninitialised after loading: {', '.join(left)}")


def load_mulan(model_dir: str | Path, device: str = "cpu", hub_cache_dir: str | None = None) -> LoadedModel:
    """Build MuQ-MuLan from a checkpoint folder and load every tensor of it, strictly."""
    checkpoint_dir = Path(model_dir).expanduser().resolve()
    if not checkpoint_dir.is_dir():
        raise ModelLoadError(f"model folder {checkpoint_dir} does not exist")
    try:
        config = MuLanConfig.from_json(_read_json(checkpoint_dir / CONFIG_FILE))
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from exc
    weights_file = _weights_path(checkpoint_dir)
    audio = resolve_sub_model(config.audio_model_name, checkpoint_dir, hub_cache_dir)
    text = resolve_sub_model(config.text_model_name, checkpoint_dir, hub_cache_dir)
    try:
        muq_config = MuQConfig.from_json(_read_json(audio.path / CONFIG_FILE))
        xlmr_config = XLMRobertaConfig.from_dict(_read_json(text.path / CONFIG_FILE))
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from exc
    if xlmr_config.model_type != "xlm-roberta":
        raise ModelLoadError(f"text sub-model {text.name!r} is not an XLM-RoBERTa config")
    xlmr_config._attn_implementation = "sdpa"
    tokenizer = load_tokenizer(text.path)

    with torch.device("meta"):
        model = MuQMuLan(config, muq_config, xlmr_config)
    expected = model.state_dict()
    state = read_state_dict(weights_file)
    check_keys(expected, state)
    tensors = {
        key: state[key].to(spec.dtype) if key in state else torch.zeros(spec.shape, dtype=spec.dtype)
        for key, spec in expected.items()
    }
    del state
    model.load_state_dict(tensors, strict=True, assign=True)
    _materialize_derived_buffers(model)
    model.to(device=device).eval()
    pad_id = int(xlmr_config.pad_token_id if xlmr_config.pad_token_id is not None else 1)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        pad_id=pad_id,
        max_tokens=int(xlmr_config.max_position_embeddings) - pad_id - 1,
        checkpoint_dir=checkpoint_dir,
        weights_file=weights_file,
        audio_model=audio,
        text_model=text,
    )
