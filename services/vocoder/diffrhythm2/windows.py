"""Where the reference's chunked decode puts each window, and which frames are final while a song grows.

The reference decodes 20-frame windows with hop 15 (overlap 5), the last window aligned to the end
of the song, and pastes them in order with a hard cut: every window loses 2 frames at each side
that touches another window, and a later window overwrites an earlier one. So frame f of a song of
T >= 20 frames comes from the regular window starting at 15 * max(0, (f - 2) // 15) when
f < T - 18, and from the end window (starting at T - 20) otherwise.

Songs shorter than one window (where the reference fails) are decoded as a single window of all
their frames.
"""

from __future__ import annotations

from dataclasses import dataclass

WINDOW_FRAMES = 20
OVERLAP_FRAMES = 5
HOP_FRAMES = WINDOW_FRAMES - OVERLAP_FRAMES
TRIM_FRAMES = OVERLAP_FRAMES // 2


@dataclass(frozen=True)
class Paste:
    """One window of the one-shot decode: decode frames [start, start + frames), then copy its
    frames [keep_from, keep_to) (relative to the window) over the song at start + keep_from."""

    start: int
    frames: int
    keep_from: int
    keep_to: int


def reference_pastes(total_frames: int) -> list[Paste]:
    """The windows of the reference one-shot decode in paste order (later ones overwrite earlier ones)."""
    if total_frames <= 0:
        return []
    if total_frames < WINDOW_FRAMES:
        return [Paste(0, total_frames, 0, total_frames)]
    starts = list(range(0, total_frames - WINDOW_FRAMES + 1, HOP_FRAMES))
    if starts[-1] + WINDOW_FRAMES != total_frames:
        starts.append(total_frames - WINDOW_FRAMES)
    last = len(starts) - 1
    return [
        Paste(
            start,
            WINDOW_FRAMES,
            TRIM_FRAMES if index > 0 else 0,
            WINDOW_FRAMES - TRIM_FRAMES if index < last else WINDOW_FRAMES,
        )
        for index, start in enumerate(starts)
    ]


def regular_owner_start(frame: int) -> int:
    """Start of the hop-aligned window whose output ends up at `frame` when no end window covers it."""
    return HOP_FRAMES * max(0, (frame - TRIM_FRAMES) // HOP_FRAMES)


def final_frame_count(received_frames: int) -> int:
    """How many leading frames of a song are final once `received_frames` have arrived, more may follow.

    Frames below received - 18 are never reached by any end window and their regular window is
    complete. Frame received - 18 is final too when the window that would end the song right now
    is itself hop-aligned (received = 20 + 15k), because then every possible song length takes that
    frame from the same window. Nothing is final before one full window has arrived, since a
    shorter song is decoded as a single window of its own length.
    """
    if received_frames < WINDOW_FRAMES:
        return 0
    boundary = received_frames - (WINDOW_FRAMES - TRIM_FRAMES)
    if (received_frames - WINDOW_FRAMES) % HOP_FRAMES == 0:
        return boundary + 1
    return boundary
