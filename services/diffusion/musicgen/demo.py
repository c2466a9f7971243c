"""Tiny random-weight MusicGen models in the Hub layout, so the whole system runs without real weights.

One folder serves all three stages, as a published MusicGen repository does: `config.json` (nested
T5, EnCodec and decoder configs), `model.safetensors` (`text_encoder.*`, `audio_encoder.*` with
weight-norm convs as `weight_g` / `weight_v`, `decoder.*`, the projections), `generation_config.json`,
`preprocessor_config.json`, the T5 tokenizer files (a small SentencePiece model shipped in
`demo_tokenizer/`, trained on synthetic music descriptions) and the manifest `songsmith-model.json`
with every file's sha256. The audio is noise: the weights are random.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from services.runtime.manifest import record_folder

KINDS = ("mono", "stereo", "melody")
DEMO_SEED = 20260415
TOKENIZER_DIR = Path(__file__).resolve().parent / "demo_tokenizer"
TOKENIZER_FILES = ("spiece.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
WEIGHTS_FILE = "model.safetensors"
# The tied T5 input embedding (the checkpoint stores it once, as text_encoder.shared.weight).
TIED_KEY = "text_encoder.encoder.embed_tokens.weight"
# Gain of EnCodec's output conv in the demo weights (random weights would otherwise peak near 2).
OUTPUT_GAIN = 0.25

TEXT_ENCODER = {
    "model_type": "t5",
    "d_model": 64,
    "d_kv": 16,
    "d_ff": 128,
    "num_layers": 2,
    "num_decoder_layers": 2,
    "num_heads": 4,
    "vocab_size": 256,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "dropout_rate": 0.1,
    "layer_norm_epsilon": 1e-06,
    "feed_forward_proj": "relu",
    "dense_act_fn": "relu",
    "is_gated_act": False,
    "is_encoder_decoder": False,
    "is_decoder": False,
    "use_cache": False,
    "tie_word_embeddings": True,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "decoder_start_token_id": 0,
    "n_positions": 512,
}
AUDIO_ENCODER = {
    "model_type": "encodec",
    "audio_channels": 1,
    "sampling_rate": 32000,
    "target_bandwidths": [2.2],
    "upsampling_ratios": [8, 5, 4, 4],
    "num_filters": 8,
    "hidden_size": 32,
    "codebook_size": 2048,
    "codebook_dim": 32,
    "kernel_size": 7,
    "last_kernel_size": 7,
    "residual_kernel_size": 3,
    "dilation_growth_rate": 2,
    "num_residual_layers": 1,
    "num_lstm_layers": 2,
    "compress": 2,
    "norm_type": "weight_norm",
    "normalize": False,
    "pad_mode": "reflect",
    "use_causal_conv": False,
    "use_conv_shortcut": False,
    "trim_right_ratio": 1.0,
    "chunk_length_s": None,
    "overlap": None,
}
DECODER = {
    "vocab_size": 2048,
    "max_position_embeddings": 2048,
    "num_hidden_layers": 2,
    "ffn_dim": 256,
    "num_attention_heads": 4,
    "hidden_size": 64,
    "activation_function": "gelu",
    "dropout": 0.1,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "layerdrop": 0.0,
    "scale_embedding": False,
    "tie_word_embeddings": False,
    "use_cache": True,
    "pad_token_id": 2048,
    "bos_token_id": 2048,
    "eos_token_id": None,
}
GENERATION_CONFIG = {
    "bos_token_id": 2048,
    "decoder_start_token_id": 2048,
    "do_sample": True,
    "guidance_scale": 3.0,
    "max_length": 1500,
    "pad_token_id": 2048,
}
ENCODEC_FEATURES = {
    "feature_extractor_type": "EncodecFeatureExtractor",
    "feature_size": 1,
    "sampling_rate": 32000,
    "padding_value": 0.0,
    "padding_side": "right",
    "return_attention_mask": True,
    "chunk_length_s": None,
    "overlap": None,
    "processor_class": "MusicgenProcessor",
}
CHROMA_FEATURES = {
    "feature_extractor_type": "MusicgenMelodyFeatureExtractor",
    "feature_size": 12,
    "sampling_rate": 32000,
    "padding_value": 0.0,
    "padding_side": "right",
    "return_attention_mask": False,
    "n_fft": 16384,
    "hop_length": 4096,
    "chunk_length": 30,
    "n_samples": 960000,
    "stem_indices": [3, 2],
    "processor_class": "MusicgenMelodyProcessor",
}


def demo_config(kind: str) -> dict:
    """The `config.json` of a demo model: "mono", "stereo" (8 interleaved codebooks) or "melody"."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    melody = kind == "melody"
    stereo = kind == "stereo"
    decoder = {
        **DECODER,
        "model_type": "musicgen_melody_decoder" if melody else "musicgen_decoder",
        "audio_channels": 2 if stereo else 1,
        "num_codebooks": 8 if stereo else 4,
    }
    config = {
        "architectures": [
            "MusicgenMelodyForConditionalGeneration" if melody else "MusicgenForConditionalGeneration"
        ],
        "model_type": "musicgen_melody" if melody else "musicgen",
        "is_encoder_decoder": True,
        "text_encoder": dict(TEXT_ENCODER),
        "audio_encoder": dict(AUDIO_ENCODER),
        "decoder": decoder,
    }
    if melody:
        config |= {"num_chroma": 12, "chroma_length": 235}
    return config


def _shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor of the published checkpoint for `config`, in the Hub's key names."""
    from transformers import (
        MusicgenConfig,
        MusicgenForConditionalGeneration,
        MusicgenMelodyConfig,
        MusicgenMelodyForConditionalGeneration,
    )
    from transformers.utils import logging as hf_logging

    melody = config["model_type"] == "musicgen_melody"
    config_class = MusicgenMelodyConfig if melody else MusicgenConfig
    model_class = MusicgenMelodyForConditionalGeneration if melody else MusicgenForConditionalGeneration
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with torch.device("meta"):
            model = model_class(config_class.from_dict(config))
    finally:
        hf_logging.set_verbosity(verbosity)
    renames = (
        ("parametrizations.weight.original0", "weight_g"),
        ("parametrizations.weight.original1", "weight_v"),
    )
    shapes = {}
    for name, tensor in model.state_dict().items():
        for new_style, hub_style in renames:
            name = name.replace(new_style, hub_style)
        if name != TIED_KEY:
            shapes[name] = tuple(tensor.shape)
    return shapes


def random_state_dict(config: dict, seed: int) -> dict[str, torch.Tensor]:
    """Seeded weights for `config` in the Hub layout: matrices N(0, 1/fan_in), embedding tables and
    codebooks N(0, 1), norm weights ones, biases small noise, each weight-norm magnitude the norm of
    its direction (EnCodec's output conv scaled down so the noise stays within [-1, 1]). Finite
    outputs that vary with every input: all a demo or a benchmark needs."""
    generator = torch.Generator().manual_seed(seed)
    shapes = _shapes(config)
    state: dict[str, torch.Tensor] = {}
    for name in sorted(shapes):
        shape = shapes[name]
        if name.endswith("weight_g"):
            continue
        if name.endswith(("layer_norm.weight", "norm.weight")):
            tensor = torch.ones(shape)
        elif ".embed_tokens." in name or name.endswith(("shared.weight", "codebook.embed")):
            tensor = torch.randn(shape, generator=generator)
        elif name.endswith("codebook.embed_avg"):
            tensor = state[name.replace("embed_avg", "embed")].clone()
        elif name.endswith(("codebook.cluster_size", "codebook.inited")):
            tensor = torch.ones(shape)
        elif len(shape) >= 2:
            fan_in = torch.Size(shape[1:]).numel()
            tensor = torch.randn(shape, generator=generator) / fan_in**0.5
        else:
            tensor = torch.randn(shape, generator=generator) * 0.02
        state[name] = tensor.contiguous()
    output_conv = max(
        (name for name in shapes if name.startswith("audio_encoder.decoder.") and name.endswith("weight_g")),
        key=lambda name: int(name.split(".")[3]),
    )
    for name in shapes:
        if name.endswith("weight_g"):
            direction = state[name.replace("weight_g", "weight_v")]
            magnitude = direction.norm(dim=tuple(range(1, direction.dim())), keepdim=True)
            state[name] = (magnitude * (OUTPUT_GAIN if name == output_conv else 1.0)).contiguous()
    return state


def write_manifest(folder: Path, name: str, source: dict) -> Path:
    """Write `songsmith-model.json`: the name, the family, where the files came from and every file's
    sha256 and size."""
    return record_folder(folder, name=name, family="musicgen", source=source)


def write_random_model(folder: Path, config: dict, name: str, seed: int = DEMO_SEED) -> Path:
    """Write a seeded random-weight MusicGen model for any `config.json` dict into `folder` in the Hub
    layout (the demo tokenizer included, so the T5 vocabulary must hold its 240 pieces), with its
    manifest under `name`; return the folder. Benchmarks use it for models of other sizes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    melody = config["model_type"] == "musicgen_melody"
    save_file(random_state_dict(config, seed), str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    documents = {
        "config.json": config,
        "generation_config.json": GENERATION_CONFIG,
        "preprocessor_config.json": CHROMA_FEATURES if melody else ENCODEC_FEATURES,
    }
    for file_name, document in documents.items():
        (folder / file_name).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    for file_name in TOKENIZER_FILES:
        shutil.copyfile(TOKENIZER_DIR / file_name, folder / file_name)
    write_manifest(folder, name, {"random": True, "seed": seed})
    return folder


def write_demo_model(folder: Path, kind: str = "mono", name: str = "", seed: int = DEMO_SEED) -> Path:
    """Write a tiny random-weight MusicGen model of `kind` ("mono", "stereo" or "melody") into `folder`
    in the Hub layout, with its manifest (named `name`, default musicgen-<kind>-demo); return the folder."""
    return write_random_model(folder, demo_config(kind), name or f"musicgen-{kind}-demo", seed)
