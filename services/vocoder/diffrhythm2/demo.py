"""A tiny random-weight decoder in the published layout, so the system runs without real weights.

Its audio is noise. The files match what `ASLP-lab/DiffRhythm2` publishes (decoder.json with every
published key, decoder.bin as `{"generator": state_dict}` in weight-norm form), only narrower.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from services.vocoder.diffrhythm2.bigvgan import BigVGANGenerator, DecoderConfig
from services.vocoder.diffrhythm2.checkpoint import CONFIG_FILE, WEIGHTS_FILE, published_shapes

DEMO_SEED = 5
DEMO_CONFIG = {
    "resblock": "1",
    "num_gpus": 0,
    "batch_size": 1,
    "learning_rate": 0.0001,
    "upsample_rates": [10, 10, 8, 3, 2, 2],
    "upsample_kernel_sizes": [20, 20, 16, 7, 4, 4],
    "upsample_initial_channel": 64,
    "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    "activation": "snakebeta",
    "snake_logscale": True,
    "use_tanh_at_final": False,
    "use_bias_at_final": False,
    "use_cqtd_instead_of_mrd": True,
    "fps": 5,
    "num_mels": 128,
    "num_freq": 4097,
    "n_fft": 4096,
    "hop_size": 600,
    "win_size": 2400,
    "sampling_rate": 48000,
    "in_channels": 64,
    "fmin": 0,
    "fmax": None,
}


def _weight_norm_form(model: BigVGANGenerator) -> dict[str, torch.Tensor]:
    """The model's state dict with each conv weight split into magnitude g and direction v."""
    expected = published_shapes(model)
    state = {}
    for key, tensor in model.state_dict().items():
        prefix = key[: -len("weight")]
        if prefix + "weight_g" in expected:
            dims = tuple(range(1, tensor.dim()))
            state[prefix + "weight_g"] = tensor.norm(p=2, dim=dims, keepdim=True).clone()
            state[prefix + "weight_v"] = tensor.clone()
        else:
            state[key] = tensor.clone()
    return state


def write_demo_decoder(model_dir: Path, config: dict = DEMO_CONFIG) -> None:
    """Write decoder.json and decoder.bin (seeded, so always the same weights) into `model_dir`;
    `config` is the decoder.json content (the benchmarks pass their own sizes)."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(DEMO_SEED)
        model = BigVGANGenerator(DecoderConfig.from_dict(config))
        for name, parameter in model.named_parameters():
            if name.endswith(("alpha", "beta")):
                parameter.data.uniform_(-0.5, 0.5)
    torch.save({"generator": _weight_norm_form(model)}, model_dir / WEIGHTS_FILE)
    (model_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
