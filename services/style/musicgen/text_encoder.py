"""MusicGen's text conditioning: the T5 encoder's last hidden state for one prompt.

The encoder is transformers' `T5EncoderModel`, built from the `text_encoder` section of the
MusicGen `config.json` and loaded strictly from the checkpoint's `text_encoder.*` keys (its token
embedding `shared.weight`, which the encoder's input embedding shares). The tokenizer is the folder's
`tokenizer.json` (T5's SentencePiece unigram model with `</s>` appended), read by `tokenizers`. One
prompt is encoded alone: no padding, attention mask all ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

from services.runtime.hub_checkpoint import CheckpointError, check_keys, read_tensors
from services.runtime.model_files import read_json

PREFIX = "text_encoder."
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
# T5 has relative positions and no hard length; its tokenizers and MusicGen's training cap prompts here.
DEFAULT_MAX_TOKENS = 512
# The encoder's input embedding is the shared table (not stored twice in the checkpoint).
TIED_KEYS = ("encoder.embed_tokens.weight",)


@dataclass
class TextEncoder:
    """The tokenizer, the T5 encoder and the longest prompt in tokens it accepts."""

    tokenizer: Tokenizer
    model: torch.nn.Module
    max_tokens: int
    device: torch.device

    def token_ids(self, prompt: str) -> list[int]:
        """The prompt's token ids, `</s>` included."""
        return self.tokenizer.encode(prompt).ids

    def encode(self, ids: list[int]) -> torch.Tensor:
        """T5 states [tokens, d_model] float32 for one prompt's token ids."""
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        with torch.inference_mode():
            states = self.model(
                input_ids=input_ids, attention_mask=torch.ones_like(input_ids)
            ).last_hidden_state
        return states[0].float().cpu()


def _max_tokens(model_dir: Path, text_config: dict) -> int:
    limits = [int(text_config.get("n_positions", DEFAULT_MAX_TOKENS))]
    tokenizer_config = read_json(model_dir, TOKENIZER_CONFIG_FILE) or {}
    declared = tokenizer_config.get("model_max_length")
    if isinstance(declared, (int, float)) and 0 < declared < 1e6:
        limits.append(int(declared))
    return min(limits)


def load_text_encoder(model_dir: Path, device: str = "cpu") -> TextEncoder:
    """Load the tokenizer and the T5 encoder of a MusicGen folder; CheckpointError (FAILED_PRECONDITION)
    naming what is missing or does not fit."""
    from transformers import T5Config, T5EncoderModel
    from transformers.utils import logging as hf_logging

    config = read_json(model_dir, "config.json")
    if config is None or not isinstance(config.get("text_encoder"), dict):
        raise CheckpointError(f"no config.json with a text_encoder section in {model_dir}")
    if not (model_dir / TOKENIZER_FILE).is_file():
        raise CheckpointError(f"no {TOKENIZER_FILE} in {model_dir} (the T5 tokenizer of the model)")
    tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    text_config = config["text_encoder"]
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity(logging.ERROR)
    try:
        t5_config = T5Config(**{**text_config, "use_cache": False})
        t5_config._attn_implementation = "eager"
        with torch.device("meta"):
            model = T5EncoderModel(t5_config)
    finally:
        hf_logging.set_verbosity(verbosity)
    tensors = {key[len(PREFIX) :]: value for key, value in read_tensors(model_dir, (PREFIX,)).items()}
    expected = {
        name: tuple(value.shape) for name, value in model.state_dict().items() if name not in TIED_KEYS
    }
    check_keys(
        {PREFIX + name: shape for name, shape in expected.items()},
        {PREFIX + name: value for name, value in tensors.items()},
        "T5 text encoder",
    )
    model.load_state_dict(tensors | {TIED_KEYS[0]: tensors["shared.weight"]}, strict=True, assign=True)
    model.encoder.embed_tokens = model.shared
    model = model.to(device).eval().requires_grad_(False)
    return TextEncoder(tokenizer, model, _max_tokens(model_dir, text_config), torch.device(device))
