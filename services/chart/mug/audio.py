"""A song's audio as the model sees it: mono at 22050 Hz, log-mel features rounded to float16.

As the reference (librosa >= 0.10 through its soundfile path) does: channels averaged in float32,
soxr "HQ" resampling when the rate differs, then the length fixed to ceil(n * ratio) samples; a
mel power spectrogram (centred frames with zero padding, periodic Hann window, numpy FFT in float64
stored as complex64, Slaney mel filters built in float64 and stored as float32), log1p and a cast to
float16. The features are then zero-padded to L * 64 frames, L being the latent length, a multiple of
32 strictly above frames / 64.
"""

from __future__ import annotations

import io
import math
from functools import lru_cache

import numpy as np
import scipy.signal
import soundfile
import soxr

from services.chart.mug.config import AudioFrontEndConfig
from services.runtime.errors import InvalidArgumentError

LATENT_MULTIPLE = 32
# Slaney mel scale: linear below 1 kHz, logarithmic above.
_MEL_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _MEL_F_SP
_LOGSTEP = np.log(6.4) / 27.0


def decode_song(data: bytes, field: str, max_seconds: float) -> tuple[np.ndarray, int]:
    """Encoded audio bytes (WAV, FLAC, MP3, OGG) as float32 [channels, n] and their sample rate.

    INVALID_ARGUMENT on `field` for empty or undecodable bytes, no samples, a recording longer than
    `max_seconds` (checked from the header before decoding) or non-finite samples.
    """
    if not data:
        raise InvalidArgumentError(field, "no audio bytes were sent")
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as reader:
            rate, frames = reader.samplerate, reader.frames
            if frames <= 0 or rate <= 0:
                raise InvalidArgumentError(field, "the recording holds no samples")
            if frames / rate > max_seconds:
                raise InvalidArgumentError(
                    field, f"the recording lasts {frames / rate:.1f} s; the limit is {max_seconds:g} s"
                )
            samples = reader.read(dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError, ValueError, TypeError) as exc:
        raise InvalidArgumentError(field, f"not decodable as WAV, FLAC, MP3 or OGG audio ({exc})") from exc
    return np.ascontiguousarray(samples.T), rate


def prepare_song(
    samples: np.ndarray, sample_rate: int, config: AudioFrontEndConfig, field: str, max_seconds: float
) -> np.ndarray:
    """PCM [channels, n] or [n] (float32, or int16 read as n / 32768) at `sample_rate` as the model's
    mono signal.

    INVALID_ARGUMENT on `field` for an empty, over-long or non-finite signal, a bad shape or rate.
    """
    if samples.ndim == 1:
        samples = samples[None]
    if samples.ndim != 2 or samples.shape[0] == 0:
        raise InvalidArgumentError(
            field, f"PCM must be [channels, samples] or [samples], got {samples.shape}"
        )
    if sample_rate <= 0:
        raise InvalidArgumentError("options.pcm_sample_rate", f"must be positive, got {sample_rate}")
    if samples.shape[1] == 0:
        raise InvalidArgumentError(field, "the recording holds no samples")
    seconds = samples.shape[1] / sample_rate
    if seconds > max_seconds:
        raise InvalidArgumentError(
            field, f"the recording lasts {seconds:.1f} s; the limit is {max_seconds:g} s"
        )
    if samples.dtype == np.int16:
        samples = samples.astype(np.float32) / np.float32(32768)
    elif samples.dtype != np.float32:
        raise InvalidArgumentError(field, f"PCM must be float32 or int16, got {samples.dtype}")
    if not np.isfinite(samples).all():
        raise InvalidArgumentError(field, "the recording holds NaN or infinite samples")
    mono = np.mean(samples, axis=0) if samples.shape[0] > 1 else samples[0]
    return resample(mono, sample_rate, config.sample_rate)


def resample(mono: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """soxr HQ resampling, then zero-padded or cut to ceil(n * target / source) samples."""
    if source_rate == target_rate:
        return np.ascontiguousarray(mono, dtype=np.float32)
    wanted = math.ceil(len(mono) * (float(target_rate) / source_rate))
    resampled = soxr.resample(mono, source_rate, target_rate, quality="HQ").astype(np.float32, copy=False)
    if len(resampled) >= wanted:
        return np.ascontiguousarray(resampled[:wanted])
    return np.pad(resampled, (0, wanted - len(resampled)))


def _hz_to_mel(hz: float) -> float:
    if hz >= _MIN_LOG_HZ:
        return _MIN_LOG_MEL + np.log(hz / _MIN_LOG_HZ) / _LOGSTEP
    return hz / _MEL_F_SP


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    hz = _MEL_F_SP * mels
    log_part = mels >= _MIN_LOG_MEL
    hz[log_part] = _MIN_LOG_HZ * np.exp(_LOGSTEP * (mels[log_part] - _MIN_LOG_MEL))
    return hz


@lru_cache(maxsize=4)
def mel_filters(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Slaney-normalised triangular mel filters [n_mels, n_fft / 2 + 1] from 0 Hz to Nyquist, float32.

    Each row is rounded to float32 and then scaled by its area normalisation, rounding again, as the
    reference's filter bank is built.
    """
    fft_hz = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    edges_hz = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2.0), n_mels + 2))
    widths = np.diff(edges_hz)
    ramps = np.subtract.outer(edges_hz, fft_hz)
    weights = np.zeros((n_mels, len(fft_hz)), dtype=np.float32)
    for band in range(n_mels):
        rising = -ramps[band] / widths[band]
        falling = ramps[band + 2] / widths[band + 1]
        weights[band] = np.maximum(0, np.minimum(rising, falling))
    weights *= (2.0 / (edges_hz[2 : n_mels + 2] - edges_hz[:n_mels]))[:, None]
    weights.flags.writeable = False
    return weights


@lru_cache(maxsize=4)
def _window(n_fft: int) -> np.ndarray:
    window = scipy.signal.get_window("hann", n_fft, fftbins=True)
    window.flags.writeable = False
    return window


def mel_features(samples: np.ndarray, config: AudioFrontEndConfig) -> np.ndarray:
    """log1p of the mel power spectrogram, float16 [n_mels, 1 + n // hop]."""
    n_fft, hop = config.n_fft, config.hop_length
    padded = np.pad(samples.astype(np.float32, copy=False), n_fft // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    spectrum = np.fft.rfft(_window(n_fft) * frames, axis=-1).astype(np.complex64)
    power = np.abs(spectrum) ** 2
    mel = np.einsum(
        "ft,mf->mt", power.T, mel_filters(config.sample_rate, n_fft, config.n_mels), optimize=True
    )
    return np.log1p(mel).astype(np.float16)


def latent_length(mel_frames: int, frames_per_latent: int) -> int:
    """The latent length L for a song of `mel_frames` frames: the next multiple of 32 strictly above
    mel_frames / frames_per_latent (the reference truncates the quotient, then adds one multiple)."""
    return (int(mel_frames / frames_per_latent / LATENT_MULTIPLE) + 1) * LATENT_MULTIPLE


def padded_features(mel: np.ndarray, length: int) -> np.ndarray:
    """The float16 features as float32, zero-padded on the right to `length` frames."""
    padded = np.zeros((mel.shape[0], length), np.float32)
    padded[:, : mel.shape[1]] = mel
    return padded
