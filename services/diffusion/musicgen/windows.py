"""Songs longer than the LM's window: AudioCraft's extended generation, in frames.

MusicGen was trained on 30 s segments (1500 frames at 50 Hz). AudioCraft generates a longer song in
windows of at most 30 s that start every 18 s (`extend_stride`): each window after the first is
prompted with the last 12 s of codes of the one before (its frames from the stride on) and adds up
to 18 s of new frames. A user's audio prompt is the first window's prompt. With the same window
geometry, one generator seeded once and drawn at every LM step of every window in order, a song is
reproducible, and a run resumed from any frame continues the same stream (see `steps_before`).
"""

from __future__ import annotations

from dataclasses import dataclass

WINDOW_SECONDS = 30.0
STRIDE_SECONDS = 18.0


@dataclass(frozen=True)
class Window:
    """One LM run: frames [start, start + frames) of the song, of which the first `prompt` are known
    when it starts (the previous window's tail, or the user's prompt)."""

    start: int
    frames: int
    prompt: int

    @property
    def end(self) -> int:
        """First song frame after the window."""
        return self.start + self.frames

    @property
    def first_new(self) -> int:
        """First song frame this window generates."""
        return self.start + self.prompt

    def steps(self, max_delay: int) -> int:
        """LM steps of an uninterrupted run of this window: one per position after the prompt, up to
        the last position the delay pattern needs (frames + max_delay - prompt)."""
        return self.frames + max_delay - self.prompt


def window_frames(frame_rate: float) -> tuple[int, int]:
    """The window and stride in frames for a model's frame rate (1500 and 900 at 50 Hz)."""
    return int(WINDOW_SECONDS * frame_rate), int(STRIDE_SECONDS * frame_rate)


def plan_windows(total: int, prompt: int, window: int, stride: int) -> list[Window]:
    """The windows of a song of `total` frames whose first `prompt` frames are given, in order.

    A song that fits one window is one window. Otherwise window i starts at i * stride and lasts
    min(total - start, window) frames; its prompt is the previous window's frames from the stride on.
    """
    if not 0 <= prompt < total:
        raise ValueError(f"prompt must be in 0..{total - 1} frames, got {prompt}")
    if not 0 < stride < window:
        raise ValueError(f"stride must be in 1..{window - 1} frames, got {stride}")
    if prompt >= window:
        raise ValueError(f"a prompt of {prompt} frames leaves no room in a {window}-frame window")
    if total <= window:
        return [Window(0, total, prompt)]
    windows = []
    start, known = 0, prompt
    while start + known < total:
        frames = min(total - start, window)
        windows.append(Window(start, frames, known))
        known = frames - stride
        start += stride
    return windows


def window_at(windows: list[Window], frame: int) -> int:
    """Index of the window that generates song frame `frame` (the windows' new frames tile the song)."""
    for index, window in enumerate(windows):
        if window.first_new <= frame < window.end:
            return index
    raise ValueError(f"no window generates frame {frame}")


def steps_before(windows: list[Window], known: int, max_delay: int) -> int:
    """LM steps an uninterrupted run takes before the step a run resumed with `known` frames starts at
    (each step draws from the song's generator, so a resumed run skips that many steps' draws)."""
    index = window_at(windows, known)
    done = sum(window.steps(max_delay) for window in windows[:index])
    return done + known - windows[index].first_new
