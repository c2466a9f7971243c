"""Audio out: PCM to WAV, FLAC, MP3 or Ogg Vorbis while it streams, fake stereo, loudness.

The encoder writes into an in-memory file and hands out the bytes as soon as the codec has written
them, each with its offset in the file. Some containers learn their length only at the end and then
rewrite their header (WAV sizes, FLAC stream info, the MP3 info frame): those late rewrites come out
as extra pieces at their earlier offsets, so a client that writes every piece at its offset ends up
with exactly the stored file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pyloudnorm
import soundfile

from songsmith.v1 import song_pb2

FAKE_STEREO_GAIN = 0.8
FAKE_STEREO_DELAY_S = 0.010
DEFAULT_TARGET_LUFS = -14.0


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
    """A growable in-memory file that remembers which bytes were already handed out."""

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()
        self._position = 0
        self._handed_out = 0
        self._rewritten: list[tuple[int, int]] = []

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self.data)}[whence]
        self._position = base + offset
        return self._position

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size is None or size < 0 else min(len(self.data), self._position + size)
        piece = bytes(self.data[self._position : end])
        self._position = max(self._position, end)
        return piece

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        end = self._position + len(view)
        if end > len(self.data):
            self.data.extend(bytes(end - len(self.data)))
        self.data[self._position : end] = view
        if self._position < self._handed_out:
            self._rewritten.append((self._position, min(end, self._handed_out)))
        self._position = end
        return len(view)

    def take(self) -> list[tuple[int, bytes]]:
        """Bytes not handed out yet, and earlier bytes written again, each with its offset."""
        pieces = [(start, bytes(self.data[start:end])) for start, end in self._rewritten]
        self._rewritten.clear()
        if len(self.data) > self._handed_out:
            pieces.append((self._handed_out, bytes(self.data[self._handed_out :])))
            self._handed_out = len(self.data)
        return pieces


class FakeStereo:
    """Turns mono into the reference's fake stereo, chunk by chunk: right = left x 0.8, 10 ms later."""

    def __init__(self, sample_rate: int) -> None:
        """Delay in samples is 10 ms at `sample_rate` (480 at 48 kHz)."""
        self._history = np.zeros(round(FAKE_STEREO_DELAY_S * sample_rate), dtype=np.float32)

    def __call__(self, mono: np.ndarray) -> np.ndarray:
        """The [n, 2] stereo frames for the next `n` mono samples."""
        joined = np.concatenate([self._history, mono.astype(np.float32, copy=False)])
        right = joined[: len(mono)] * FAKE_STEREO_GAIN
        self._history = joined[len(joined) - len(self._history) :]
        return np.stack([mono, right], axis=1)


def fake_stereo(mono: np.ndarray, sample_rate: int) -> np.ndarray:
    """The whole-song fake stereo ([n, 2]) of `mono`."""
    return FakeStereo(sample_rate)(mono)


def normalize_loudness(audio: np.ndarray, sample_rate: int, target_lufs: float) -> np.ndarray:
    """`audio` scaled to the integrated loudness `target_lufs`, clipped to [-1, 1].

    Audio too short or too quiet to measure (under 0.4 s, or silence) is returned unchanged.
    """
    meter = pyloudnorm.Meter(sample_rate)
    if len(audio) < int(0.4 * sample_rate):
        return audio
    loudness = meter.integrated_loudness(audio.astype(np.float64))
    if not np.isfinite(loudness):
        return audio
    return np.clip(pyloudnorm.normalize.loudness(audio, loudness, target_lufs), -1.0, 1.0).astype(np.float32)


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

    def write(self, frames: np.ndarray) -> list[tuple[int, bytes]]:
        """Encode `frames` ([n] or [n, channels] float in [-1, 1]); return pieces now final."""
        if len(frames):
            self._sound.write(np.clip(frames, -1.0, 1.0))
        return self._file.take()

    def close(self) -> list[tuple[int, bytes]]:
        """Finish the file; return the last pieces, header rewrites included."""
        self._sound.close()
        return self._file.take()

    @property
    def data(self) -> bytes:
        """The file as written so far (complete after `close`)."""
        return bytes(self._file.data)


def encode(audio: np.ndarray, audio_format: int, sample_rate: int) -> bytes:
    """The whole file for `audio` ([n] mono or [n, 2] stereo) in one go."""
    encoder = StreamingEncoder(audio_format, sample_rate, 1 if audio.ndim == 1 else audio.shape[1])
    encoder.write(audio)
    encoder.close()
    return encoder.data
