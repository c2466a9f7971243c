"""Streaming EnCodec decode: codes in as they are generated, audio out as soon as it equals the one-shot
decode of the whole song.

The decoder's frame-rate part is a conv of kernel 7 (3 frames of reach each side) and an LSTM; the
rest (transposed convs and residual blocks up to 32 kHz) reads 1 frame of LSTM output each side of a
frame (`upsampling_reach`). So:

1. the input conv's output for frame t is final once frame t + 3 has arrived (its right padding only
   matters at the song's end); those outputs go through the LSTM with its state carried from the last
   call, which computes exactly what one pass over the whole song computes;
2. the audio of frame f is final once LSTM outputs up to f + 1 exist: it is decoded from a window of
   LSTM outputs starting 1 frame before the first frame not yet sent (or at the song's start, whose
   padding is the one-shot's), and only the frames the window makes exact are kept.

Audio therefore trails the codes by 4 frames (80 ms), whatever the arrival pattern, and memory stays
flat: the decoder keeps a few frames of codec latents and LSTM outputs, never the song.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from services.runtime.cancellation import CancellationToken
from services.runtime.errors import InvalidArgumentError
from services.vocoder.engine import PcmPiece
from services.vocoder.musicgen.encodec import Encodec, pad1d, upsampling_reach

FRAMES_FIELD = "latents"


def check_codes(
    frames: np.ndarray, codebooks: int, codebook_size: int, field: str = FRAMES_FIELD
) -> np.ndarray:
    """`frames` as int64 codes [n, codebooks] in 0..codebook_size-1; InvalidArgumentError naming `field`."""
    array = np.asarray(frames)
    if array.ndim != 2 or array.shape[1] != codebooks:
        raise InvalidArgumentError(
            field, f"expected codes of shape [frames, {codebooks}], got {list(array.shape)}"
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise InvalidArgumentError(field, f"expected integer codes, got {array.dtype}")
    if array.size and (array.min() < 0 or array.max() >= codebook_size):
        raise InvalidArgumentError(field, f"codes must be in 0..{codebook_size - 1}")
    return array.astype(np.int64, copy=False)


class StreamingDecoder:
    """Decodes one song incrementally: `push` each block of codes, then `finish` once."""

    def __init__(
        self,
        codec: Encodec,
        to_rows: Callable[[np.ndarray], torch.Tensor],
        codebooks: int,
        max_frames: int,
        token: CancellationToken | None = None,
    ) -> None:
        """`to_rows` maps codes [n, codebooks] to the codec's batch [channels, levels, n] (one mono decode
        per audio channel)."""
        self._codec = codec
        self._decoder = codec.decoder
        self._to_rows = to_rows
        self._codebooks = codebooks
        self._max_frames = max_frames
        self._token = token
        self._spf = codec.config.samples_per_frame
        self._conv_left, self._conv_right = self._decoder.input_conv.reach()
        self._up_left, self._up_right = upsampling_reach(self._decoder, self._spf)
        self._received = 0
        self._latents: torch.Tensor | None = None
        self._latents_start = 0
        self._lstm_done = 0
        self._lstm_memory: tuple[torch.Tensor, torch.Tensor] | None = None
        self._lstm_out: torch.Tensor | None = None
        self._lstm_start = 0
        self._emitted = 0
        self._finished = False

    @property
    def emitted_samples(self) -> int:
        """Samples released so far per channel (the offset of the next piece)."""
        return self._emitted * self._spf

    @property
    def buffered_frames(self) -> int:
        """Frames of latents and LSTM outputs held (bounded, whatever the song length)."""
        latents = 0 if self._latents is None else self._latents.shape[-1]
        outputs = 0 if self._lstm_out is None else self._lstm_out.shape[-1]
        return latents + outputs

    def skip_to(self, sample: int) -> None:
        """Nothing to leave out: the LSTM's state depends on every frame before, and decoding the
        same blocks again in the same pieces is what gives the same samples, so a resumed decode
        runs in full and the servicer drops the samples the caller already has."""

    def push(self, frames: np.ndarray) -> list[PcmPiece]:
        """Add the next codes [n, codebooks] (n may be 0); return the audio that became final.

        InvalidArgumentError for a wrong shape, codes out of range or more frames than the cap."""
        if self._finished:
            raise RuntimeError("push after finish")
        codes = check_codes(frames, self._codebooks, self._codec.config.codebook_size)
        total = self._received + len(codes)
        if total > self._max_frames:
            raise InvalidArgumentError(
                FRAMES_FIELD, f"song would have {total} frames, more than the cap of {self._max_frames}"
            )
        if len(codes):
            with torch.inference_mode():
                latents = self._codec.quantizer.decode(self._to_rows(codes))
            self._latents = latents if self._latents is None else torch.cat([self._latents, latents], dim=-1)
            self._received = total
        return self._advance()

    def finish(self) -> list[PcmPiece]:
        """The song has no more codes: return every sample not yet returned."""
        if self._finished:
            raise RuntimeError("finish called twice")
        self._finished = True
        if self._received == 0:
            return []
        return self._advance()

    def _advance(self) -> list[PcmPiece]:
        with torch.inference_mode():
            self._run_lstm()
            pieces = self._release_audio()
        self._forget()
        return pieces

    def _run_lstm(self) -> None:
        """Feed the LSTM every frame whose input-conv output can no longer change."""
        final = self._received if self._finished else self._received - self._conv_right
        if final <= self._lstm_done:
            return
        if self._token is not None:
            self._token.check()
        first = max(0, self._lstm_done - self._conv_left)
        last = min(self._received, final + self._conv_right)
        window = self._latents[..., first - self._latents_start : last - self._latents_start]
        pad_left = self._conv_left - (self._lstm_done - first)
        pad_right = final + self._conv_right - last
        conv = self._decoder.input_conv
        states = conv.conv(pad1d(window, pad_left, pad_right, conv.pad_mode))
        outputs, self._lstm_memory = self._decoder.lstm(states, self._lstm_memory)
        self._lstm_out = outputs if self._lstm_out is None else torch.cat([self._lstm_out, outputs], dim=-1)
        self._lstm_done = final

    def _release_audio(self) -> list[PcmPiece]:
        """Decode the frames whose audio the LSTM outputs so far fix."""
        final = self._lstm_done if self._finished else self._lstm_done - self._up_right
        if final <= self._emitted:
            return []
        if self._token is not None:
            self._token.check()
        first = max(0, self._emitted - self._up_left)
        window = self._lstm_out[..., first - self._lstm_start : self._lstm_done - self._lstm_start]
        audio = self._decoder.upsample(window)
        begin = (self._emitted - first) * self._spf
        samples = audio[:, 0, begin : begin + (final - self._emitted) * self._spf]
        piece = PcmPiece(self._emitted * self._spf, samples.float().cpu().numpy())
        self._emitted = final
        return [piece]

    def _forget(self) -> None:
        """Drop latents and LSTM outputs that no later frame reads."""
        keep_latents = max(0, self._lstm_done - self._conv_left)
        if self._latents is not None and keep_latents > self._latents_start:
            self._latents = self._latents[..., keep_latents - self._latents_start :]
            self._latents_start = keep_latents
        keep_outputs = max(0, self._emitted - self._up_left)
        if self._lstm_out is not None and keep_outputs > self._lstm_start:
            self._lstm_out = self._lstm_out[..., keep_outputs - self._lstm_start :]
            self._lstm_start = keep_outputs
