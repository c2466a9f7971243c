"""A random-weight Mug-Diffusion model in the published layout, so the chart stage runs anywhere.

Its charts are noise: the weights are untrained. The folder matches the released bundle's
`models/ckpt/` (model.ckpt as a Lightning-style dict with `state_dict`, model.yaml with the keys
inference reads) plus the feature list at the path model.yaml names. `write_demo_model` writes the
tiny default; `published_config` gives the released model's sizes (156.5 M parameters), which the
benchmark builds in memory.
"""

from __future__ import annotations

import copy
import math
import shutil
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from services.chart.mug.checkpoint import NETWORK_PREFIX, MugDiffusion
from services.chart.mug.config import CONFIG_FILE, WEIGHTS_FILE, MugConfig
from services.chart.mug.features import PUBLISHED_FEATURES, FeaturePrompt
from services.chart.mug.layers import Downsample, ResnetBlock, group_norm
from services.chart.mug.model_files import write_manifest
from services.chart.mug.s4 import S4Layer, StateSpaceKernel

DEMO_SEED = 16
FEATURE_YAML = "configs/mug/mania_beatmap_features.yaml"
LIGHTNING_VERSION = "1.9.0"

# The structure of the released model.yaml (the keys inference reads), with tiny sizes.
DEMO_CONFIG: dict = {
    "model": {
        "target": "mug.diffusion.diffusion.DDPM",
        "params": {
            "linear_start": 0.0001,
            "linear_end": 0.02,
            "timesteps": 1000,
            "z_channels": 16,
            "z_length": 512,
            "parameterization": "eps",
            "unet_config": {
                "target": "mug.diffusion.unet.UNetModel",
                "params": {
                    "in_channels": 16,
                    "model_channels": 32,
                    "out_channels": 16,
                    "attention_resolutions": [2, 8],
                    "num_res_blocks": 1,
                    "channel_mult": [1, 1, 2, 2],
                    "num_heads": 4,
                    "context_dim": 32,
                    "dropout": 0.0,
                    "lstm_last": False,
                    "lstm_layer": False,
                    "s4_layer": True,
                    "audio_channels": [32, 32, 32, 32],
                    "use_checkpoint": False,
                },
            },
            "first_stage_config": {
                "target": "mug.firststage.autoencoder.AutoencoderKL",
                "params": {
                    "kl_weight": 1.0e-06,
                    "ddconfig": {
                        "x_channels": 16,
                        "middle_channels": 16,
                        "z_channels": 16,
                        "num_groups": 8,
                        "channel_mult": [1, 2, 4, 4],
                        "num_res_blocks": 1,
                    },
                    "lossconfig": {"target": "torch.nn.Identity"},
                },
            },
            "cond_stage_config": {
                "target": "mug.cond.feature.BeatmapFeatureEmbedder",
                "params": {"path_to_yaml": FEATURE_YAML, "embed_dim": 32},
            },
            "wave_stage_config": {
                "target": "mug.cond.wave.MelspectrogramScaleEncoder1D",
                "params": {
                    "n_freq": 128,
                    "middle_channels": 16,
                    "attention_resolutions": [256, 512],
                    "num_res_blocks": 2,
                    "num_heads": 4,
                    "num_groups": 8,
                    "dropout": 0.0,
                    "use_checkpoint": True,
                    "channel_mult": [1, 1, 1, 1, 2, 2, 2, 2, 2, 2],
                },
            },
        },
    },
    "data": {
        "params": {
            "common_params": {
                "sr": 22050,
                "n_fft": 512,
                "max_audio_frame": 32768,
                "audio_note_window_ratio": 8,
                "n_mels": 128,
                "feature_yaml": FEATURE_YAML,
            }
        }
    },
    "version": "0-demo",
}


def published_config() -> dict:
    """The model.yaml tree with the released model's sizes (the repository's mug_diffusion.yaml)."""
    tree = copy.deepcopy(DEMO_CONFIG)
    params = tree["model"]["params"]
    params["unet_config"]["params"].update(
        model_channels=128,
        attention_resolutions=[8, 4, 2],
        num_res_blocks=2,
        channel_mult=[1, 2, 3, 4],
        num_heads=8,
        context_dim=128,
        audio_channels=[256, 512, 512, 512],
    )
    params["first_stage_config"]["params"]["ddconfig"]["middle_channels"] = 64
    params["cond_stage_config"]["params"]["embed_dim"] = 128
    params["wave_stage_config"]["params"].update(
        middle_channels=128,
        attention_resolutions=[128, 256, 512],
        num_groups=32,
        num_heads=8,
        channel_mult=[1, 1, 1, 1, 2, 2, 2, 4, 4, 4],
    )
    tree["version"] = "published-size-demo"
    return tree


class _TrainingEncoder(nn.Module):
    """The note VAE's encoder, built only to write its (unused) tensors in the published layout."""

    def __init__(self, config: MugConfig) -> None:
        super().__init__()
        dd = config.note_decoder
        middle, groups = dd.middle_channels, dd.num_groups
        self.conv_in = nn.Conv1d(dd.x_channels, middle, 3, padding=1)
        in_mult = (1, *dd.channel_mult)
        self.down = nn.ModuleList()
        for level, mult in enumerate(dd.channel_mult):
            stage = nn.Module()
            channels = middle * in_mult[level]
            stage.block = nn.ModuleList()
            for _ in range(dd.num_res_blocks):
                stage.block.append(ResnetBlock(channels, middle * mult, groups))
                channels = middle * mult
            if level != len(dd.channel_mult) - 1:
                stage.downsample = Downsample(channels)
            self.down.append(stage)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(channels, channels, groups)
        self.mid.block_2 = ResnetBlock(channels, channels, groups)
        self.norm_out = group_norm(channels, groups)
        self.conv_out = nn.Conv1d(channels, 2 * dd.z_channels, 3, padding=1)


def _schedule(config: MugConfig) -> dict[str, torch.Tensor]:
    """The DDPM's schedule buffers as the reference registers them (float64 maths, stored float32)."""
    betas = (
        np.linspace(config.linear_start**0.5, config.linear_end**0.5, config.timesteps, dtype=np.float64) ** 2
    )
    alphas = 1.0 - betas
    cumprod = np.cumprod(alphas)
    previous = np.append(1.0, cumprod[:-1])
    variance = betas * (1.0 - previous) / (1.0 - cumprod)
    values = {
        "betas": betas,
        "alphas_cumprod": cumprod,
        "alphas_cumprod_prev": previous,
        "sqrt_alphas_cumprod": np.sqrt(cumprod),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - cumprod),
        "log_one_minus_alphas_cumprod": np.log(1.0 - cumprod),
        "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / cumprod),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / cumprod - 1),
        "posterior_variance": variance,
        "posterior_log_variance_clipped": np.log(np.maximum(variance, 1e-20)),
        "posterior_mean_coef1": betas * np.sqrt(previous) / (1.0 - cumprod),
        "posterior_mean_coef2": (1.0 - previous) * np.sqrt(alphas) / (1.0 - cumprod),
    }
    return {name: torch.tensor(value, dtype=torch.float32) for name, value in values.items()}


def _init_state_space(kernel: StateSpaceKernel, trained_length: int, generator: torch.Generator) -> None:
    """A stable diagonal-plus-low-rank state space (S4D-Lin-like poles, small random B, C, P)."""
    copies, modes = kernel.inv_w_real.shape
    kernel.inv_w_real.fill_(math.log(0.5))
    kernel.w_imag.copy_(math.pi * torch.arange(modes, dtype=torch.float32).expand(copies, modes))
    low, high = math.log(0.001), math.log(0.1)
    kernel.log_dt.copy_(torch.rand(kernel.log_dt.shape, generator=generator) * (high - low) + low)
    kernel.B.copy_(torch.randn(kernel.B.shape, generator=generator) * 0.5)
    kernel.P.copy_(torch.randn(kernel.P.shape, generator=generator) * 0.1)
    kernel.C.copy_(torch.randn(kernel.C.shape, generator=generator) * modes**-0.5)
    kernel.L.fill_(trained_length)


def random_model(tree: dict, seed: int = DEMO_SEED) -> tuple[MugDiffusion, FeaturePrompt]:
    """A MugDiffusion for the config tree with seeded random weights (S4 set up at z_length)."""
    config = MugConfig.from_dict(tree)
    prompt = FeaturePrompt.load(PUBLISHED_FEATURES)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MugDiffusion(config, prompt.rows)
    with torch.no_grad():
        for layer, length in model.unet_model.layer_lengths(config.z_length).items():
            if isinstance(layer, S4Layer):
                _init_state_space(layer.s4_model.kernel.kernel, length, generator)
        model.alphas_cumprod.copy_(_schedule(config)["alphas_cumprod"])
    return model, prompt


def published_state(model: MugDiffusion, seed: int = DEMO_SEED) -> dict[str, torch.Tensor]:
    """Every tensor of a released checkpoint's state_dict for `model`: its networks, the training-only
    VAE encoder (random) and all twelve schedule buffers."""
    state = {name: tensor for name, tensor in model.published_state().items() if name != "alphas_cumprod"}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        encoder = _TrainingEncoder(model.config)
    prefix = NETWORK_PREFIX + "first_stage_model.encoder."
    state.update({prefix + name: tensor for name, tensor in encoder.state_dict().items()})
    state.update(_schedule(model.config))
    return state


def write_model(folder: Path, tree: dict, seed: int = DEMO_SEED) -> Path:
    """Write model.ckpt, model.yaml and the feature list for the config `tree` into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model, _ = random_model(tree, seed)
    checkpoint = {
        "epoch": 0,
        "global_step": 0,
        "pytorch-lightning_version": LIGHTNING_VERSION,
        "state_dict": {name: tensor.contiguous() for name, tensor in published_state(model, seed).items()},
    }
    torch.save(checkpoint, folder / WEIGHTS_FILE)
    (folder / CONFIG_FILE).write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    features = folder / FEATURE_YAML
    features.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PUBLISHED_FEATURES, features)
    return folder


def write_demo_model(folder: Path) -> Path:
    """Write the tiny untrained demo chart model into `folder` (always the same weights), with a
    manifest that says it is untrained."""
    write_model(folder, DEMO_CONFIG)
    write_manifest(folder, "mug-demo", {"kind": "demo", "untrained": True})
    return Path(folder)
