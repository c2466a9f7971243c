"""A tiny random-weight DiffRhythm v1 VAE written like the published file.

The published `vae_model.pt` is a TorchScript archive in `ASLP-lab/DiffRhythm-vae` (pulled by
`songsmith models pull diffrhythm1`, see `gateway/model_store.py: MODELS`); the stage opens
it only when the model folder's manifest pins its sha256 (see checkpoint.py), so whoever writes the
file into a folder records it there. The demo VAE is our own modules scripted into the same kind of
archive (same method names, same tensor names), so the demo runs the same loading path.
"""

from __future__ import annotations

from pathlib import Path

import torch

from services.runtime.manifest import record_files
from services.vocoder.diffrhythm1.checkpoint import WEIGHTS_FILE
from services.vocoder.diffrhythm1.engine import FAMILY
from services.vocoder.diffrhythm1.oobleck import OobleckConfig, OobleckVae, ScriptedVae

DEMO_CHANNELS = 4
DEMO_SEED = 11


def random_vae(channels: int, seed: int) -> OobleckVae:
    """An Oobleck VAE of width `channels` with seeded random weights (snake parameters near 0, i.e.
    alpha and beta near 1): finite, input-dependent audio, which is all a demo needs."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = OobleckVae(OobleckConfig(channels))
        for name, parameter in vae.named_parameters():
            if name.endswith(("alpha", "beta")):
                torch.nn.init.uniform_(parameter, -0.5, 0.5)
    return vae.eval().requires_grad_(False)


def write_scripted_vae(vae: OobleckVae, path: Path) -> Path:
    """Script `vae` with `decode_export` / `encode_export` and save it as a TorchScript archive."""
    torch.jit.save(torch.jit.script(ScriptedVae(vae)), str(path))
    return path


def write_demo_vae(model_dir: Path, name: str = "diffrhythm1-demo") -> Path:
    """Write a tiny random `vae_model.pt` into `model_dir` and pin it in the folder's manifest."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    write_scripted_vae(random_vae(DEMO_CHANNELS, DEMO_SEED), model_dir / WEIGHTS_FILE)
    record_files(
        model_dir, (WEIGHTS_FILE,), name=name, family=FAMILY, source={"kind": "demo", "seed": DEMO_SEED}
    )
    return model_dir
