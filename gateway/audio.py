"""Audio out: PCM to WAV, FLAC, MP3 or Ogg Vorbis while it streams, fake stereo, loudness.

PCM is [channels, n] float32 everywhere here, the layout the stages produce.

The encoder hands out the bytes as soon as the codec has written them, each with its offset in the
file, and keeps none it has handed out: memory holds only the bytes written since the last hand-out,
whatever the song's length (libsndfile never reads back while it writes). Some containers learn
their length only at the end and then rewrite their header (WAV sizes, FLAC stream info, the MP3
info frame): those late rewrites come out as extra pieces at their earlier offsets, so whoever
writes every piece at its offset (the gateway's results file, a client) ends up with the same file.

Peak normalization is the DiffRhythm v1 reference's way of writing a song: divided by its peak over
all channels, 16-bit PCM truncated toward zero; the encoder then takes those int16 samples as they
are, so a WAV holds exactly the reference's samples.

Loudness normalization measures the final channels (after fake stereo) with the BS.1770 meter and
reaches the target with a gain and a look-ahead true-peak limiter: peaks are measured on the signal
oversampled 4x (as BS.1770 measures true peak) and held to -1 dBTP by a smooth gain curve, never by
clipping samples.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pyloudnorm
import soundfile
from scipy import ndimage, signal

from songsmith.v1 import song_pb2

FAKE_STEREO_GAIN = 0.8
FAKE_STEREO_DELAY_S = 0.010
DEFAULT_TARGET_LUFS = -14.0
TRUE_PEAK_CEILING_DBTP = -1.0
TRUE_PEAK_OVERSAMPLING = 4
LIMITER_WINDOW_S = 0.010  # look-ahead, and the length of every gain ramp
LOUDNESS_PASSES = 6  # gain and limiter rounds; the limiter takes away a little loudness each time
LOUDNESS_TOLERANCE_LU = 0.1
MIN_MEASURABLE_S = 0.4  # one BS.1770 gating block
INT16_PEAK = 32767


@dataclass(frozen=True)
class Container:
    """How soundfile writes one output format."""

    extension: str
    format: str
    subtype: str
    mime: str


CONTAINERS: dict[int, Container] = {
    song_pb2.AUDIO_FORMAT_MP3: Container("mp3", "MP3", "MPEG_LAYER_III", "audio/mpeg"),
    song_pb2.AUDIO_FORMAT_WAV: Container("wav", "WAV", "PCM_16", "audio/wav"),
    song_pb2.AUDIO_FORMAT_FLAC: Container("flac", "FLAC", "PCM_16", "audio/flac"),
    song_pb2.AUDIO_FORMAT_OGG: Container("ogg", "OGG", "VORBIS", "audio/ogg"),
}


class _TrackedFile(io.RawIOBase):
    """A write-only file for the codec that keeps only the bytes not yet handed out: the region
    from the last hand-out to the end, and copies of earlier bytes written again (header rewrites)."""

    def __init__(self) -> None:
        super().__init__()
        self._position = 0
        self._handed_out = 0
        self._pending = bytearray()
        self._rewritten: list[tuple[int, bytes]] = []

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        end = self._handed_out + len(self._pending)
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: end}[whence]
        self._position = base + offset
        return self._position

    def read(self, size: int = -1) -> bytes:
        raise io.UnsupportedOperation("the encoder's file is write-only: handed-out bytes are not kept")

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        start, end = self._position, self._position + len(view)
        split = min(max(self._handed_out, start), end)  # the bytes before it were handed out already
        if start < split:
            self._rewritten.append((start, bytes(view[: split - start])))
        if end > split:
            low, high = split - self._handed_out, end - self._handed_out
            if high > len(self._pending):
                self._pending.extend(bytes(high - len(self._pending)))
            self._pending[low:high] = view[split - start :]
        self._position = end
        return len(view)

    def take(self) -> list[tuple[int, bytes]]:
        """Earlier bytes written again, then the bytes not handed out yet, each with its offset."""
        pieces, self._rewritten = self._rewritten, []
        if self._pending:
            pieces.append((self._handed_out, bytes(self._pending)))
            self._handed_out += len(self._pending)
            self._pending = bytearray()
        return pieces


class FakeStereo:
    """Turns mono into the reference's fake stereo, chunk by chunk: right = left x 0.8, 10 ms later."""

    def __init__(self, sample_rate: int) -> None:
        """Delay in samples is 10 ms at `sample_rate` (480 at 48 kHz)."""
        self._history = np.zeros(round(FAKE_STEREO_DELAY_S * sample_rate), dtype=np.float32)

    def __call__(self, mono: np.ndarray) -> np.ndarray:
        """The [2, n] stereo PCM for the next [1, n] mono PCM."""
        left = mono[0].astype(np.float32, copy=False)
        joined = np.concatenate([self._history, left])
        right = joined[: len(left)] * FAKE_STEREO_GAIN
        self._history = joined[len(joined) - len(self._history) :]
        return np.stack([left, right])


def fake_stereo(mono: np.ndarray, sample_rate: int) -> np.ndarray:
    """The whole-song fake stereo ([2, n]) of [1, n] mono PCM."""
    return FakeStereo(sample_rate)(mono)


def _db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def true_peak_envelope(audio: np.ndarray, block: int = 1 << 18) -> np.ndarray:
    """Per sample, the largest magnitude of any channel on the signal oversampled 4x around it (the
    sample and the interpolated points up to the next one), [n] float32; computed in blocks."""
    margin = 64
    envelope = np.empty(audio.shape[1], np.float32)
    for start in range(0, audio.shape[1], block):
        stop = min(audio.shape[1], start + block)
        left, right = max(0, start - margin), min(audio.shape[1], stop + margin)
        up = signal.resample_poly(audio[:, left:right], TRUE_PEAK_OVERSAMPLING, 1, axis=1)
        peaks = np.abs(up).max(axis=0).reshape(-1, TRUE_PEAK_OVERSAMPLING).max(axis=1)
        # the next sample's point closes the interval that starts at this one
        peaks = np.maximum(peaks, np.append(peaks[1:], peaks[-1]))
        envelope[start:stop] = peaks[start - left : stop - left]
    return envelope


def limiter_gain(envelope: np.ndarray, ceiling: float, window: int) -> np.ndarray:
    """A smooth gain curve ([n], at most 1) that keeps `envelope` x gain under `ceiling`.

    The gain each sample needs is held for `window` samples before it (look-ahead) and the result is
    averaged over `window` samples, so every sample's gain is at most what it needs and each change
    is a ramp of `window` samples: no clipping, no clicks.
    """
    needed = np.minimum(1.0, ceiling / np.maximum(envelope, 1e-12)).astype(np.float32)
    ahead = ndimage.minimum_filter1d(needed, size=window, origin=-(window // 2), mode="nearest")
    return ndimage.uniform_filter1d(ahead, size=window, origin=(window - 1) // 2, mode="nearest")


def normalize_loudness(audio: np.ndarray, sample_rate: int, target_lufs: float) -> np.ndarray:
    """[channels, n] audio brought to the integrated loudness `target_lufs` (BS.1770, measured on all
    channels together), its true peak held to -1 dBTP by a look-ahead limiter instead of clipping.

    The gain is refined over a few rounds because limiting lowers the loudness a little. Audio too
    short or too quiet to measure (under 0.4 s, or silence) is returned unchanged.
    """
    if audio.shape[1] < int(MIN_MEASURABLE_S * sample_rate):
        return audio
    meter = pyloudnorm.Meter(sample_rate)
    source = audio.astype(np.float32, copy=False)
    loudness = meter.integrated_loudness(source.T.astype(np.float64))
    if not np.isfinite(loudness):
        return audio
    envelope = true_peak_envelope(source)
    ceiling = _db_to_gain(TRUE_PEAK_CEILING_DBTP)
    window = max(1, round(LIMITER_WINDOW_S * sample_rate))
    gain_db, slope = target_lufs - loudness, 1.0
    previous: tuple[float, float] | None = None
    for _ in range(LOUDNESS_PASSES):
        gain = _db_to_gain(gain_db)
        result = source * (gain * limiter_gain(envelope * gain, ceiling, window))
        reached = meter.integrated_loudness(result.T.astype(np.float64))
        if abs(reached - target_lufs) <= LOUDNESS_TOLERANCE_LU:
            break
        if previous is not None and gain_db != previous[0]:
            # the more the limiter works, the less loudness each dB of gain adds: a secant step
            slope = float(np.clip((reached - previous[1]) / (gain_db - previous[0]), 0.05, 1.0))
        previous = (gain_db, reached)
        gain_db += (target_lufs - reached) / slope
    return result.astype(np.float32, copy=False)


def peak_normalize_int16(audio: np.ndarray) -> np.ndarray:
    """A song's float audio [channels, n] as the DiffRhythm v1 reference writes it: divided by its
    peak over all channels together (float32), clamped to [-1, 1], times 32767, truncated toward zero
    to int16. Silence (a zero peak, where the reference would divide by zero) stays silence."""
    samples = np.asarray(audio, np.float32)
    peak = np.abs(samples).max() if samples.size else np.float32(0)
    if peak == 0:
        return np.zeros(samples.shape, np.int16)
    scaled = np.clip(samples / peak, np.float32(-1), np.float32(1)) * np.float32(INT16_PEAK)
    return scaled.astype(np.int16)


class StreamingEncoder:
    """Encodes PCM into one container while it arrives; `write`/`close` return the new file pieces."""

    def __init__(self, audio_format: int, sample_rate: int, channels: int) -> None:
        """A file of `channels` channels at `sample_rate` in `audio_format` (an AudioFormat value)."""
        self.container = CONTAINERS[audio_format]
        self._file = _TrackedFile()
        self._sound = soundfile.SoundFile(
            self._file,
            mode="w",
            samplerate=sample_rate,
            channels=channels,
            format=self.container.format,
            subtype=self.container.subtype,
        )

    def write(self, pcm: np.ndarray) -> list[tuple[int, bytes]]:
        """Encode `pcm` ([channels, n] float in [-1, 1], or int16 samples written as they are);
        return pieces now final."""
        if pcm.shape[1]:
            self._sound.write(pcm.T if pcm.dtype == np.int16 else np.clip(pcm.T, -1.0, 1.0))
        return self._file.take()

    def close(self) -> list[tuple[int, bytes]]:
        """Finish the file; return the last pieces, header rewrites included."""
        self._sound.close()
        return self._file.take()


def assemble_pieces(pieces: list[tuple[int, bytes]]) -> bytes:
    """The file that `pieces` ((offset, bytes), in order) make when each is written at its offset."""
    file = bytearray()
    for offset, data in pieces:
        if offset > len(file):
            file.extend(bytes(offset - len(file)))
        file[offset : offset + len(data)] = data
    return bytes(file)


def encode(audio: np.ndarray, audio_format: int, sample_rate: int) -> bytes:
    """The whole file for `audio` ([channels, n]) in one go."""
    encoder = StreamingEncoder(audio_format, sample_rate, audio.shape[0])
    return assemble_pieces(encoder.write(audio) + encoder.close())
