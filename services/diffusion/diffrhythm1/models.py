"""Where DiffRhythm v1's generation files come from, and a tiny random-weight model to run anywhere.

Published: the DiT checkpoint `cfm_model.pt` on the Hugging Face Hub (base and full model, see
`gateway/model_store.py: MODELS`); the config and the negative style vector live in the GitHub repo,
not on the Hub, so they ship inside this package (`assets/`) and `install_package_files` copies them
into the model folder. The VAE comes with the vocoder stage's files
(services/vocoder/diffrhythm1/models.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from services.diffusion.diffrhythm1.checkpoint import KEY_PREFIX, STATE_ENTRY, WEIGHTS_FILE
from services.diffusion.diffrhythm1.dit import BASE_MAX_FRAMES, CONFIG_FILE, FULL_MAX_FRAMES, DiT, DiTConfig
from services.diffusion.diffrhythm1.engine import FAMILY, NEGATIVE_STYLE_FILE
from services.runtime.manifest import record_files

ASSETS = Path(__file__).resolve().parent / "assets"
# Files of the model folder that come from this package: name in the folder -> packaged file.
PACKAGE_FILES = {
    CONFIG_FILE: ASSETS / "diffrhythm-1b.json",
    NEGATIVE_STYLE_FILE: ASSETS / "negative_style.npy",
}
DEMO_CONFIG = {"dim": 64, "depth": 2, "heads": 32, "ff_mult": 2, "text_dim": 512, "conv_layers": 1}
DEMO_SEED = 20250303


def install_package_files(model_dir: Path) -> list[Path]:
    """Copy the config and the negative style shipped in this package into `model_dir`."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copyfile(source, model_dir / name)) for name, source in PACKAGE_FILES.items()]


def random_checkpoint(config: DiTConfig, seed: int) -> dict[str, dict[str, torch.Tensor]]:
    """Seeded random weights for `config` in the published layout (`model_state_dict`, keys prefixed
    `transformer.`, float16 like the published file). Matrices get N(0, 1/fan_in), norms ones,
    everything else small noise: finite, input-dependent outputs, which is all a demo needs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        shapes = {name: tensor.shape for name, tensor in DiT(config).state_dict().items()}
    state = {}
    for name, shape in shapes.items():
        if name.endswith("layernorm.weight") or name.endswith("norm.weight"):
            tensor = torch.ones(shape)
        elif len(shape) >= 2:
            tensor = torch.randn(shape, generator=generator) / shape[1:].numel() ** 0.5
        else:
            tensor = torch.randn(shape, generator=generator) * 0.02
        state[KEY_PREFIX + name] = tensor.half()
    return {STATE_ENTRY: state}


def write_demo_generator(model_dir: Path, full: bool = True, name: str = "diffrhythm1-demo") -> Path:
    """Write a tiny random DiT (`cfm_model.pt`, full or base), the config and the negative style into
    `model_dir` and record them in its manifest; return the folder."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    config = DiTConfig(**DEMO_CONFIG, max_frames=FULL_MAX_FRAMES if full else BASE_MAX_FRAMES)
    torch.save(random_checkpoint(config, DEMO_SEED), model_dir / WEIGHTS_FILE)
    (model_dir / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=4) + "\n", encoding="utf-8")
    shutil.copyfile(PACKAGE_FILES[NEGATIVE_STYLE_FILE], model_dir / NEGATIVE_STYLE_FILE)
    record_files(
        model_dir,
        (WEIGHTS_FILE, CONFIG_FILE, NEGATIVE_STYLE_FILE),
        name=name,
        family=FAMILY,
        source={"kind": "demo", "seed": DEMO_SEED},
    )
    return model_dir
