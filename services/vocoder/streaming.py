"""Streaming decode: latent frames in as they arrive, PCM out as soon as those samples are final.

The output equals the one-shot reference chunked decode of the whole sequence whatever the
arrival pattern, because every sample is taken from the same window the one-shot decode would paste
last over it (see `windows`, whose `ChunkPlan` gives each family's window and overlap), and a
sample is only released once no possible song length can change which window that is. Memory
stays flat: the decoder keeps at most about one window of latent frames and at most two decoded
windows, never the whole song.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from services.runtime.cancellation import CancellationToken
from services.runtime.errors import InvalidArgumentError
from services.vocoder.engine import PcmPiece
from services.vocoder.windows import ChunkPlan

WindowDecoder = Callable[[np.ndarray], np.ndarray]
# Decoders' latents stay within a few units; far larger values only overflow the decoder.
LATENT_LIMIT = 1000.0


def validate_latents(latents: np.ndarray, channels: int, field: str = "frames") -> np.ndarray:
    """`latents` as a float32 [frames, channels] array of finite values within ±LATENT_LIMIT;
    InvalidArgumentError naming `field` otherwise."""
    array = np.asarray(latents)
    if array.ndim != 2 or array.shape[1] != channels:
        raise InvalidArgumentError(field, f"expected shape [frames, {channels}], got {list(array.shape)}")
    if array.dtype != np.float32:
        raise InvalidArgumentError(field, f"dtype must be float32, got {array.dtype}")
    if not np.isfinite(array).all():
        raise InvalidArgumentError(field, "latents contain NaN or infinite values")
    if array.size and np.abs(array).max() > LATENT_LIMIT:
        raise InvalidArgumentError(field, f"latent values must lie within ±{LATENT_LIMIT:g}")
    return array


class StreamingDecoder:
    """Decodes one song incrementally: call `push` with each block, then `finish` once."""

    def __init__(
        self,
        decode_window: WindowDecoder,
        channels: int,
        samples_per_frame: int,
        max_frames: int,
        plan: ChunkPlan,
        token: CancellationToken | None = None,
    ) -> None:
        """`decode_window` maps latents [frames, channels] to audio [audio channels, frames * spf];
        `plan` is the family's window layout."""
        self._decode_window = decode_window
        self._plan = plan
        self._channels = channels
        self._samples_per_frame = samples_per_frame
        self._max_frames = max_frames
        self._token = token
        self._received = 0
        self._tail = np.zeros((0, channels), np.float32)
        self._tail_start = 0
        self._next_window = 0
        self._decoded: dict[int, np.ndarray] = {}
        self._emitted = 0
        self._finished = False

    @property
    def received_frames(self) -> int:
        """Latent frames pushed so far."""
        return self._received

    @property
    def buffered_frames(self) -> int:
        """Latent frames held for windows still to decode (bounded, whatever the song length)."""
        return len(self._tail)

    @property
    def buffered_windows(self) -> int:
        """Decoded windows held for samples still to release (at most two)."""
        return len(self._decoded)

    @property
    def emitted_samples(self) -> int:
        """Samples released so far (the offset of the next piece)."""
        return self._emitted * self._samples_per_frame

    def skip_to(self, sample: int) -> None:
        """Start releasing at the frame that holds `sample` (a resumed decode): every window still
        receives its own frames, but the windows whose samples all come before are not decoded, so
        the samples from there on are those of the whole song's decode. Call before the first push."""
        if self._received:
            raise RuntimeError("skip_to after push")
        self._emitted = sample // self._samples_per_frame

    def push(self, latents: np.ndarray) -> list[PcmPiece]:
        """Add the next frames [n, channels] (n may be 0); return the samples that became final, in order.

        Raises InvalidArgumentError for a wrong shape, non-finite values or more frames than the cap.
        """
        return list(self.iter_push(latents))

    def iter_push(self, latents: np.ndarray) -> Iterator[PcmPiece]:
        """Like `push`, but yields each piece as soon as its window is decoded (the whole block is
        validated before anything is decoded), so a large block never holds all its audio at once.
        The frames are taken in as the iterator is consumed: consume it fully before the next call."""
        if self._finished:
            raise RuntimeError("push after finish")
        frames = validate_latents(latents, self._channels)
        total = self._received + len(frames)
        if total > self._max_frames:
            raise InvalidArgumentError(
                "frames", f"song would have {total} frames, more than the cap of {self._max_frames}"
            )
        return self._pieces_for(frames)

    def _pieces_for(self, frames: np.ndarray) -> Iterator[PcmPiece]:
        hop = self._plan.hop_frames
        for begin in range(0, len(frames), hop):
            self._append(frames[begin : begin + hop])
            yield from self._release_final()

    def finish(self) -> list[PcmPiece]:
        """The song is complete: return every sample not yet released (decoding the end window)."""
        if self._finished:
            raise RuntimeError("finish called twice")
        self._finished = True
        total = self._received
        if total <= self._emitted:
            return []
        window = self._plan.window_frames
        end_start = max(0, total - window)
        audio = self._decoded.get(end_start) if total >= window else None
        if audio is None:
            audio = self._decode(end_start, total - end_start)
        pieces = [self._piece(audio, end_start, self._emitted, total)]
        self._emitted = total
        self._decoded.clear()
        self._tail = self._tail[:0]
        return pieces

    def _append(self, frames: np.ndarray) -> None:
        self._tail = np.concatenate([self._tail, frames])
        self._received += len(frames)

    def _release_final(self) -> list[PcmPiece]:
        """Decode every newly complete hop-aligned window and release the frames that are now final."""
        pieces = []
        plan = self._plan
        while plan.hop_frames * self._next_window + plan.window_frames <= self._received:
            start = plan.hop_frames * self._next_window
            if start >= plan.owner_start(self._emitted):
                self._decoded[start] = self._decode(start, plan.window_frames)
            self._next_window += 1
        final = plan.final_frame_count(self._received)
        while self._emitted < final:
            owner = plan.owner_start(self._emitted)
            owned_until = min(final, owner + plan.hop_frames + plan.trim_frames)
            pieces.append(self._piece(self._decoded[owner], owner, self._emitted, owned_until))
            self._emitted = owned_until
        self._forget_consumed()
        return pieces

    def _forget_consumed(self) -> None:
        """Drop decoded windows and latent frames that no future sample can come from."""
        plan = self._plan
        needed_window = plan.owner_start(self._emitted)
        for start in [s for s in self._decoded if s < needed_window]:
            del self._decoded[start]
        keep_from = max(0, min(plan.hop_frames * self._next_window, self._received - plan.window_frames))
        if keep_from > self._tail_start:
            self._tail = self._tail[keep_from - self._tail_start :].copy()
            self._tail_start = keep_from

    def _decode(self, start: int, frames: int) -> np.ndarray:
        if self._token is not None:
            self._token.check()
        offset = start - self._tail_start
        return self._decode_window(self._tail[offset : offset + frames])

    def _piece(self, window_audio: np.ndarray, window_start: int, first: int, stop: int) -> PcmPiece:
        spf = self._samples_per_frame
        begin = (first - window_start) * spf
        samples = window_audio[:, begin : begin + (stop - first) * spf]
        return PcmPiece(first * spf, samples)
