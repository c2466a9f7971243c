"""MusicGen's vocoder engine: EnCodec decode of the generated codes (one-shot and streaming) and
EnCodec encode of a recording to continue.

Frames are int64 codes [frames, codebooks] (the generation stage's blocks). Mono models have 4
codebooks decoded to [1, samples]; stereo models 8 interleaved codebooks L0, R0, L1, R1, ...: the
even ones decode to the left channel and the odd ones to the right, each by the same mono codec,
giving [2, samples]. 640 samples per frame at 32 kHz.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soxr
import torch

from services.runtime.cancellation import CancellationToken
from services.runtime.errors import FailedPreconditionError, InvalidArgumentError
from services.runtime.hub_checkpoint import weight_files
from services.runtime.model_files import read_json
from services.runtime.model_info import ModelInfo, model_name, weights_revision
from services.runtime.recording import DATA_FIELD, RecordingLimits, read_recording
from services.vocoder.engine import VocoderSettings
from services.vocoder.musicgen.encodec import Encodec, load_encodec
from services.vocoder.musicgen.streaming import FRAMES_FIELD, StreamingDecoder, check_codes

FAMILY = "musicgen"
DEFAULT_MAX_FRAMES = 15000
# The longest recording `encode_recording` takes: a continuation prompt must fit the LM's 30 s window.
MAX_PROMPT_SECONDS = 30.0
RECORDING_LIMITS = RecordingLimits(max_bytes=64 << 20, max_seconds=MAX_PROMPT_SECONDS)


class MusicgenVocoderEngine:
    """Turns MusicGen codes [frames, codebooks] into float32 audio [channels, frames x 640] at 32 kHz."""

    def __init__(
        self, codec: Encodec, codebooks: int, channels: int, max_frames: int, info: ModelInfo | None = None
    ):
        """Wrap a loaded codec; `codebooks` and `channels` are the LM's (4 and 1, or 8 and 2)."""
        if codebooks % channels or codebooks // channels > codec.config.num_quantizers:
            raise FailedPreconditionError(
                f"{codebooks} codebooks over {channels} channels do not fit EnCodec's "
                f"{codec.config.num_quantizers} levels"
            )
        self.codec = codec
        self.codebooks = codebooks
        self.channels = channels
        self.levels = codebooks // channels
        self.max_frames = max_frames
        self.device = next(codec.parameters()).device
        self.sample_rate = codec.config.sampling_rate
        self.samples_per_frame = codec.config.samples_per_frame
        self.info = info or ModelInfo(
            name=FAMILY,
            family=FAMILY,
            revision="",
            families=(FAMILY,),
            sample_rate=self.sample_rate,
            channels=channels,
        )

    @classmethod
    def load(
        cls, model_dir: str | Path, device: str = "cpu", max_frames: int = DEFAULT_MAX_FRAMES, name: str = ""
    ) -> MusicgenVocoderEngine:
        """Load EnCodec from the MusicGen folder `model_dir` (FailedPreconditionError when it is missing
        or does not fit the config); the codebook layout comes from the config's decoder section."""
        path = Path(model_dir)
        config = read_json(path, "config.json") or {}
        decoder = config.get("decoder")
        if not isinstance(decoder, dict):
            raise FailedPreconditionError(f"no MusicGen config.json with a decoder section in {path}")
        codec = load_encodec(path, device)
        channels = int(decoder.get("audio_channels", 1))
        codebooks = int(decoder.get("num_codebooks", 4))
        info = ModelInfo(
            name=model_name(path, name),
            family=FAMILY,
            revision=weights_revision(weight_files(path)),
            families=(FAMILY,),
            sample_rate=codec.config.sampling_rate,
            frame_rate=codec.config.sampling_rate / codec.config.samples_per_frame,
            channels=channels,
        )
        return cls(codec, codebooks, channels, max_frames, info)

    @classmethod
    def from_settings(cls, model_dir: Path, settings: VocoderSettings) -> MusicgenVocoderEngine:
        """`load` with the stage's settings (the family registry's entry point)."""
        return cls.load(
            model_dir, settings.device, settings.max_frames_cap or DEFAULT_MAX_FRAMES, settings.name
        )

    def to_rows(self, codes: np.ndarray) -> torch.Tensor:
        """Codes [n, codebooks] to the codec's batch [channels, levels, n]: codebook k of an interleaved
        stereo model goes to channel k % 2."""
        rows = torch.from_numpy(np.ascontiguousarray(codes.T)).to(self.device)
        return rows.view(self.levels, self.channels, -1).transpose(0, 1)

    def decode(self, frames: np.ndarray, token: CancellationToken | None = None) -> np.ndarray:
        """The one-shot decode of a whole song: codes [n, codebooks] -> [channels, n x 640] float32."""
        codes = check_codes(frames, self.codebooks, self.codec.config.codebook_size)
        if len(codes) > self.max_frames:
            raise InvalidArgumentError(
                FRAMES_FIELD, f"{len(codes)} frames is more than the cap of {self.max_frames}"
            )
        if len(codes) == 0:
            return np.zeros((self.channels, 0), np.float32)
        if token is not None:
            token.check()
        with torch.inference_mode():
            audio = self.codec.decode(self.to_rows(codes))
        return audio[:, 0].float().cpu().numpy()

    def stream(self, token: CancellationToken | None = None) -> StreamingDecoder:
        """A decoder for one song whose codes arrive in blocks; see `StreamingDecoder`."""
        return StreamingDecoder(self.codec, self.to_rows, self.codebooks, self.max_frames, token)

    def warm_up(self) -> None:
        """Decode a few frames so the first request does not pay for kernel selection."""
        self.decode(np.zeros((8, self.codebooks), np.int64))

    def encode(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """EnCodec codes [frames, codebooks] of a recording [channels, samples] at `sample_rate`, to
        continue it (the generation stage's `prompt_codes`). The recording is brought to 32 kHz and to
        the model's channels as AudioCraft does (a mono model averages the channels, a stereo model
        doubles a mono recording), and coded channel by channel; frames = ceil(samples / 640)."""
        samples = np.asarray(audio, dtype=np.float32)
        if samples.ndim != 2 or samples.shape[1] == 0:
            raise InvalidArgumentError(
                DATA_FIELD, f"expected audio [channels, samples], got {list(samples.shape)}"
            )
        if not np.isfinite(samples).all():
            raise InvalidArgumentError(DATA_FIELD, "the recording holds NaN or infinite samples")
        if samples.shape[1] / sample_rate > MAX_PROMPT_SECONDS:
            raise InvalidArgumentError(
                DATA_FIELD, f"a prompt recording may last at most {MAX_PROMPT_SECONDS:g} s"
            )
        if sample_rate != self.sample_rate:
            samples = soxr.resample(samples.T, sample_rate, self.sample_rate).T.astype(np.float32)
        if self.channels == 1:
            samples = samples.mean(axis=0, keepdims=True)
        elif samples.shape[0] == 1:
            samples = np.repeat(samples, self.channels, axis=0)
        else:
            samples = samples[: self.channels]
        batch = torch.from_numpy(np.ascontiguousarray(samples))[:, None].to(self.device)
        with torch.inference_mode():
            codes = self.codec.encode(batch, self.levels)
        return codes.transpose(0, 1).reshape(self.codebooks, -1).T.cpu().numpy().astype(np.int64)

    def encode_recording(self, data: bytes, token: CancellationToken | None = None) -> np.ndarray:
        """`encode` of an encoded recording (WAV, FLAC, MP3 or OGG; any rate and channel count).
        INVALID_ARGUMENT on field `data` when it is empty, undecodable, too long or too large."""
        samples = read_recording(data, RECORDING_LIMITS, self.sample_rate)
        if token is not None:
            token.check()
        return self.encode(samples, self.sample_rate)
