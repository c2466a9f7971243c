"""Mug-Diffusion's `model.yaml`, read into dataclasses: only the keys inference uses.

The published `model.yaml` is the training config (an OmegaConf YAML) plus a top-level `version`.
Its data sets, trainer, logger, optimiser schedule and training checkpoint path are ignored. A
setting the reference's inference path does not support (an LSTM layer, another audio encoder, a
parameterisation other than eps) is refused when the model loads, naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from services.runtime.errors import FailedPreconditionError

CONFIG_FILE = "model.yaml"
WEIGHTS_FILE = "model.ckpt"
AUDIO_ENCODER_TARGET = "MelspectrogramScaleEncoder1D"


def _section(tree: Any, path: str) -> dict:
    node = tree
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            raise FailedPreconditionError(f"{CONFIG_FILE} has no {path}")
        node = node[key]
    if not isinstance(node, dict):
        raise FailedPreconditionError(f"{CONFIG_FILE}: {path} is not a mapping")
    return node


def _ints(values: Any, key: str) -> tuple[int, ...]:
    if not isinstance(values, list) or not all(isinstance(v, int) for v in values):
        raise FailedPreconditionError(f"{CONFIG_FILE}: {key} must be a list of integers, got {values!r}")
    return tuple(values)


def _required(section: dict, key: str, where: str) -> Any:
    if key not in section or section[key] is None:
        raise FailedPreconditionError(f"{CONFIG_FILE} has no {where}.{key}")
    return section[key]


@dataclass(frozen=True)
class UNetConfig:
    """The denoiser (`model.params.unet_config.params`)."""

    in_channels: int
    model_channels: int
    out_channels: int
    num_res_blocks: int
    attention_resolutions: tuple[int, ...]
    channel_mult: tuple[int, ...]
    audio_channels: tuple[int, ...]
    num_heads: int
    num_head_channels: int
    context_dim: int
    transformer_depth: int
    s4_layer: bool
    use_scale_shift_norm: bool

    @classmethod
    def from_dict(cls, params: dict) -> UNetConfig:
        """Read the UNet's parameters; FailedPreconditionError for an unsupported setting."""
        where = "model.params.unet_config.params"
        if params.get("lstm_layer", False):
            raise FailedPreconditionError(f"{CONFIG_FILE}: {where}.lstm_layer is not supported")
        if params.get("dims", 1) != 1:
            raise FailedPreconditionError(f"{CONFIG_FILE}: {where}.dims must be 1")
        config = cls(
            in_channels=int(_required(params, "in_channels", where)),
            model_channels=int(_required(params, "model_channels", where)),
            out_channels=int(_required(params, "out_channels", where)),
            num_res_blocks=int(_required(params, "num_res_blocks", where)),
            attention_resolutions=_ints(
                _required(params, "attention_resolutions", where), f"{where}.attention_resolutions"
            ),
            channel_mult=_ints(params.get("channel_mult", [1, 2, 4, 8]), f"{where}.channel_mult"),
            audio_channels=_ints(_required(params, "audio_channels", where), f"{where}.audio_channels"),
            num_heads=int(params.get("num_heads", -1)),
            num_head_channels=int(params.get("num_head_channels", -1)),
            context_dim=int(_required(params, "context_dim", where)),
            transformer_depth=int(params.get("transformer_depth", 1)),
            s4_layer=bool(params.get("s4_layer", False)),
            use_scale_shift_norm=bool(params.get("use_scale_shift_norm", False)),
        )
        if len(config.audio_channels) != len(config.channel_mult):
            raise FailedPreconditionError(
                f"{CONFIG_FILE}: {where}.audio_channels needs one entry per channel_mult level"
            )
        if config.num_heads == -1 and config.num_head_channels == -1:
            raise FailedPreconditionError(f"{CONFIG_FILE}: {where} needs num_heads or num_head_channels")
        return config

    def heads(self, channels: int) -> tuple[int, int]:
        """(heads, channels per head) of a transformer over `channels` channels."""
        if self.num_head_channels == -1:
            return self.num_heads, channels // self.num_heads
        return channels // self.num_head_channels, self.num_head_channels


@dataclass(frozen=True)
class AudioEncoderConfig:
    """The mel-spectrogram encoder (`model.params.wave_stage_config.params`)."""

    n_freq: int
    middle_channels: int
    attention_resolutions: tuple[int, ...]
    num_res_blocks: int
    num_heads: int
    num_groups: int
    channel_mult: tuple[int, ...]

    @classmethod
    def from_dict(cls, stage: dict) -> AudioEncoderConfig:
        """Read the audio encoder's parameters; only MelspectrogramScaleEncoder1D is supported."""
        where = "model.params.wave_stage_config"
        target = str(stage.get("target", ""))
        if target.rsplit(".", 1)[-1] != AUDIO_ENCODER_TARGET:
            raise FailedPreconditionError(
                f"{CONFIG_FILE}: {where}.target {target!r} is not supported (only {AUDIO_ENCODER_TARGET})"
            )
        params = _section(stage, "params")
        where += ".params"
        return cls(
            n_freq=int(_required(params, "n_freq", where)),
            middle_channels=int(_required(params, "middle_channels", where)),
            attention_resolutions=_ints(
                _required(params, "attention_resolutions", where), f"{where}.attention_resolutions"
            ),
            num_res_blocks=int(_required(params, "num_res_blocks", where)),
            num_heads=int(_required(params, "num_heads", where)),
            num_groups=int(_required(params, "num_groups", where)),
            channel_mult=_ints(_required(params, "channel_mult", where), f"{where}.channel_mult"),
        )


@dataclass(frozen=True)
class NoteDecoderConfig:
    """The note VAE's decoder (`model.params.first_stage_config.params.ddconfig`, plus `scale`)."""

    x_channels: int
    middle_channels: int
    z_channels: int
    num_groups: int
    channel_mult: tuple[int, ...]
    num_res_blocks: int
    scale: float

    @classmethod
    def from_dict(cls, params: dict) -> NoteDecoderConfig:
        """Read the decoder's parameters (the latent is divided by `scale` before decoding)."""
        where = "model.params.first_stage_config.params.ddconfig"
        ddconfig = _section(params, "ddconfig")
        return cls(
            x_channels=int(_required(ddconfig, "x_channels", where)),
            middle_channels=int(_required(ddconfig, "middle_channels", where)),
            z_channels=int(_required(ddconfig, "z_channels", where)),
            num_groups=int(ddconfig.get("num_groups", 32)),
            channel_mult=_ints(_required(ddconfig, "channel_mult", where), f"{where}.channel_mult"),
            num_res_blocks=int(_required(ddconfig, "num_res_blocks", where)),
            scale=float(params.get("scale", 1.0)),
        )


@dataclass(frozen=True)
class AudioFrontEndConfig:
    """How a song becomes mel features (`data.params.common_params`)."""

    sample_rate: int
    n_fft: int
    n_mels: int
    max_audio_frame: int
    audio_note_window_ratio: int

    @property
    def hop_length(self) -> int:
        """Samples between mel frames: n_fft / 4."""
        return self.n_fft // 4

    @property
    def note_frame_ms(self) -> float:
        """Length of one note frame (audio_note_window_ratio mel hops) in milliseconds."""
        return self.hop_length / self.sample_rate * self.audio_note_window_ratio * 1000


@dataclass(frozen=True)
class MugConfig:
    """Everything inference reads from `model.yaml`."""

    unet: UNetConfig
    audio_encoder: AudioEncoderConfig
    note_decoder: NoteDecoderConfig
    audio: AudioFrontEndConfig
    feature_yaml: str
    embed_dim: int
    z_channels: int
    z_length: int
    timesteps: int
    linear_start: float
    linear_end: float
    version: str

    @property
    def frames_per_latent(self) -> int:
        """Mel frames per latent position: max_audio_frame / z_length (64 for the published model)."""
        return self.audio.max_audio_frame // self.z_length

    @classmethod
    def from_dict(cls, tree: Any) -> MugConfig:
        """Read a parsed model.yaml; FailedPreconditionError naming a missing or unsupported key."""
        params = _section(tree, "model.params")
        parameterization = params.get("parameterization", "eps")
        if parameterization != "eps":
            raise FailedPreconditionError(
                f"{CONFIG_FILE}: model.params.parameterization {parameterization!r} is not supported (eps)"
            )
        schedule = params.get("beta_schedule", "linear")
        if schedule != "linear":
            raise FailedPreconditionError(
                f"{CONFIG_FILE}: model.params.beta_schedule {schedule!r} is not supported (linear)"
            )
        cond = _section(params, "cond_stage_config.params")
        common = _section(tree, "data.params.common_params")
        where = "data.params.common_params"
        audio = AudioFrontEndConfig(
            sample_rate=int(_required(common, "sr", where)),
            n_fft=int(_required(common, "n_fft", where)),
            n_mels=int(_required(common, "n_mels", where)),
            max_audio_frame=int(_required(common, "max_audio_frame", where)),
            audio_note_window_ratio=int(_required(common, "audio_note_window_ratio", where)),
        )
        return cls(
            unet=UNetConfig.from_dict(_section(params, "unet_config.params")),
            audio_encoder=AudioEncoderConfig.from_dict(_section(params, "wave_stage_config")),
            note_decoder=NoteDecoderConfig.from_dict(_section(params, "first_stage_config.params")),
            audio=audio,
            feature_yaml=str(_required(cond, "path_to_yaml", "model.params.cond_stage_config.params")),
            embed_dim=int(_required(cond, "embed_dim", "model.params.cond_stage_config.params")),
            z_channels=int(_required(params, "z_channels", "model.params")),
            z_length=int(_required(params, "z_length", "model.params")),
            timesteps=int(params.get("timesteps", 1000)),
            linear_start=float(params.get("linear_start", 1e-4)),
            linear_end=float(params.get("linear_end", 2e-2)),
            version=str(tree.get("version", "")),
        )

    @classmethod
    def load(cls, model_dir: Path) -> MugConfig:
        """Read `model_dir/model.yaml`; FailedPreconditionError when it is missing or unreadable."""
        path = Path(model_dir) / CONFIG_FILE
        try:
            tree = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise FailedPreconditionError(f"cannot read {path}: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            raise FailedPreconditionError(f"{path} is not valid YAML: {exc}") from exc
        if not isinstance(tree, dict):
            raise FailedPreconditionError(f"{path} does not hold a mapping")
        return cls.from_dict(tree)
