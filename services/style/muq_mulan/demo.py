"""A small random-weight MuQ-MuLan in the published layout, for demos, tests and benchmarks.

`write_demo_model(root)` writes the MuLan checkpoint folder and, beside it, the MuQ and XLM-R
sub-model folders its config.json names (configs and the tokenizer; every weight lives in the MuLan
file, as in the published model). The tokenizer is a small Unigram XLM-R tokenizer shipped in
`assets/`. Weights are seeded, so the same call always writes the same numbers. Its vectors carry no
meaning: the model was never trained.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from transformers import XLMRobertaConfig

from services.style.muq_mulan.mulan import MuLanConfig, MuQMuLan
from services.style.muq_mulan.muq import MuQConfig

ASSETS = Path(__file__).parent / "assets" / "xlm-roberta-tiny"
TOKENIZER_VOCAB = 472
CHECKPOINT_NAME = "MuQ-MuLan-demo"
AUDIO_NAME = "MuQ-demo-audio"
TEXT_NAME = "xlm-roberta-demo"
MUQ_MEL_MEAN = 6.768444971712967
MUQ_MEL_STD = 18.417922652295623


@dataclass(frozen=True)
class DemoSize:
    """Widths and depths of a demo model; feed-forward widths are `ffn_mult` x the model width."""

    conv_dim: int
    muq_dim: int
    muq_depth: int
    muq_heads: int
    xlmr_dim: int
    xlmr_depth: int
    xlmr_heads: int
    head_dim: int
    head_depth: int
    head_heads: int
    head_dim_head: int
    ffn_mult: int = 2


TINY = DemoSize(16, 64, 2, 4, 48, 2, 4, 32, 2, 2, 16)
MEDIUM = DemoSize(64, 256, 4, 4, 256, 4, 4, 256, 2, 4, 64)
# The published model's shapes (MuQ-large, XLM-R base, two 768 x 8 MuLan heads), except XLM-R's
# vocabulary: the demo tokenizer has 472 tokens instead of 250,002 (embedding rows cost no compute).
REAL_SHAPES = DemoSize(512, 1024, 12, 16, 768, 12, 12, 768, 8, 8, 64, ffn_mult=4)


def _muq_config(size: DemoSize) -> dict[str, Any]:
    return {
        "label_rate": 25,
        "hop_length": 240,
        "n_mels": 128,
        "conv_dim": size.conv_dim,
        "encoder_dim": size.muq_dim,
        "encoder_depth": size.muq_depth,
        "features": ["melspec_2048"],
        "stat": {"melspec_2048_mean": MUQ_MEL_MEAN, "melspec_2048_std": MUQ_MEL_STD},
        "w2v2_config": {
            "model_type": "wav2vec2-conformer",
            "hidden_size": size.muq_dim,
            "num_hidden_layers": size.muq_depth,
            "num_attention_heads": size.muq_heads,
            "intermediate_size": size.ffn_mult * size.muq_dim,
            "conv_depthwise_kernel_size": 31,
            "position_embeddings_type": "rotary",
            "rotary_embedding_base": 10000,
            "hidden_act": "swish",
            "layer_norm_eps": 1e-5,
        },
    }


def _xlmr_config(size: DemoSize) -> dict[str, Any]:
    return XLMRobertaConfig(
        vocab_size=TOKENIZER_VOCAB,
        hidden_size=size.xlmr_dim,
        num_hidden_layers=size.xlmr_depth,
        num_attention_heads=size.xlmr_heads,
        intermediate_size=size.ffn_mult * size.xlmr_dim,
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        layer_norm_eps=1e-5,
        architectures=["XLMRobertaModel"],
    ).to_dict()


def _mulan_config(size: DemoSize) -> dict[str, Any]:
    head = {
        "dim": size.head_dim,
        "tf_depth": size.head_depth,
        "heads": size.head_heads,
        "dim_head": size.head_dim_head,
        "attn_dropout": 0.0,
        "ff_dropout": 0.0,
        "ff_mult": 4,
    }
    return {
        "mulan": {"sr": 24000, "clip_secs": 10, "dim_latent": 512},
        "audio_model": {"name": AUDIO_NAME, "model_dim": size.muq_dim, "use_layer_idx": -1},
        "text_model": {"name": TEXT_NAME, "model_dim": size.xlmr_dim, "use_layer_idx": -1},
        "audio_transformer": head,
        "text_transformer": {**head, "max_seq_len": 1024},
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_demo_model(root: Path, size: DemoSize = TINY, seed: int = 0) -> Path:
    """Write a seeded random-weight MuQ-MuLan under `root` (checkpoint folder plus the two sub-model
    folders beside it) and return the checkpoint folder, ready for `StyleEngine.load`."""
    root = Path(root)
    mulan_json, muq_json, xlmr_json = _mulan_config(size), _muq_config(size), _xlmr_config(size)
    _write_json(root / AUDIO_NAME / "config.json", muq_json)
    _write_json(root / TEXT_NAME / "config.json", xlmr_json)
    for asset in sorted(ASSETS.glob("*.json")):
        shutil.copyfile(asset, root / TEXT_NAME / asset.name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MuQMuLan(
            MuLanConfig.from_json(mulan_json),
            MuQConfig.from_json(muq_json),
            XLMRobertaConfig.from_dict(xlmr_json),
        )
    state = {key: tensor.contiguous() for key, tensor in model.state_dict().items()}
    checkpoint = root / CHECKPOINT_NAME
    _write_json(checkpoint / "config.json", mulan_json)
    save_file(state, str(checkpoint / "model.safetensors"))
    return checkpoint
