"""Where a reference chunked decode puts each window, and which frames are final while a song grows.

Both DiffRhythm decoders decode a song in fixed windows with a hop of window - overlap, the last
window aligned to the end of the song, and paste them in order with a hard cut: every window loses
overlap // 2 frames at each side that touches another window, and a later window overwrites an
earlier one (DiffRhythm 2: 20-frame windows, overlap 5; DiffRhythm v1: 128, overlap 32). So frame f
of a song of T >= window frames comes from the regular window starting at
hop * max(0, (f - trim) // hop) when f < T - (window - trim), and from the end window (starting at
T - window) otherwise. A song shorter than one window is decoded as a single window of all its
frames (what the v1 reference does; the DiffRhythm 2 reference fails there).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Paste:
    """One window of the one-shot decode: decode frames [start, start + frames), then copy its
    frames [keep_from, keep_to) (relative to the window) over the song at start + keep_from."""

    start: int
    frames: int
    keep_from: int
    keep_to: int


@dataclass(frozen=True)
class ChunkPlan:
    """A family's chunked decode: `window_frames` per window, `overlap_frames` between neighbours."""

    window_frames: int
    overlap_frames: int

    @property
    def hop_frames(self) -> int:
        """Frames between the starts of two regular windows."""
        return self.window_frames - self.overlap_frames

    @property
    def trim_frames(self) -> int:
        """Frames a window loses at each side it shares with another window."""
        return self.overlap_frames // 2

    def pastes(self, total_frames: int) -> list[Paste]:
        """The windows of the reference decode in paste order (later ones overwrite earlier ones)."""
        window, trim = self.window_frames, self.trim_frames
        if total_frames <= 0:
            return []
        if total_frames < window:
            return [Paste(0, total_frames, 0, total_frames)]
        starts = list(range(0, total_frames - window + 1, self.hop_frames))
        if starts[-1] + window != total_frames:
            starts.append(total_frames - window)
        last = len(starts) - 1
        return [
            Paste(start, window, trim if index > 0 else 0, window - trim if index < last else window)
            for index, start in enumerate(starts)
        ]

    def owner_start(self, frame: int) -> int:
        """Start of the hop-aligned window whose output ends up at `frame` when no end window covers it."""
        return self.hop_frames * max(0, (frame - self.trim_frames) // self.hop_frames)

    def final_frame_count(self, received_frames: int) -> int:
        """How many leading frames of a song are final once `received_frames` have arrived, more may follow.

        Frames below received - (window - trim) are never reached by any end window and their regular
        window is complete. The frame at that boundary is final too when the window that would end
        the song right now is itself hop-aligned (received = window + k * hop), because then every
        possible song length takes that frame from the same window. Nothing is final before one full
        window has arrived, since a shorter song is decoded as a single window of its own length.
        """
        if received_frames < self.window_frames:
            return 0
        boundary = received_frames - (self.window_frames - self.trim_frames)
        if (received_frames - self.window_frames) % self.hop_frames == 0:
            return boundary + 1
        return boundary
