"""A tiny random-weight DiT in the published layout, so the whole system runs without real weights."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from services.diffusion.diffrhythm2.checkpoint import KEY_PREFIX, WEIGHTS_FILE
from services.diffusion.diffrhythm2.dit import DiT, DiTConfig

DEMO_CONFIG = DiTConfig(
    dim=64, depth=2, heads=2, ff_mult=2, mel_dim=64, text_num_embeds=1000, repa_depth=1, repa_dims=(32,)
)
DEMO_SEED = 20260128


def random_state_dict(config: DiTConfig, seed: int) -> dict[str, torch.Tensor]:
    """Seeded weights for `config` in the published key layout (with the `transformer.` prefix).

    Matrices get N(0, 1/fan_in), biases small noise, norm weights ones: outputs stay finite and
    vary with every input, which is all a demo or a benchmark needs.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        shapes = {name: tensor.shape for name, tensor in DiT(config).state_dict().items()}
    state = {}
    for name, shape in shapes.items():
        if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
            tensor = torch.ones(shape)
        elif len(shape) == 2 and "text_embed" in name:
            tensor = torch.randn(shape, generator=generator)
        elif len(shape) == 2:
            tensor = torch.randn(shape, generator=generator) / shape[1] ** 0.5
        else:
            tensor = torch.randn(shape, generator=generator) * 0.02
        state[KEY_PREFIX + name] = tensor.contiguous()
    return state


def write_demo_checkpoint(model_dir: Path, config: DiTConfig = DEMO_CONFIG, seed: int = DEMO_SEED) -> Path:
    """Write `model.safetensors` and `config.json` of a seeded random DiT into `model_dir`; return it."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    save_file(random_state_dict(config, seed), str(model_dir / WEIGHTS_FILE))
    (model_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n", encoding="utf-8")
    return model_dir
