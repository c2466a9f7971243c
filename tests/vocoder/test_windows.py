"""The window layout of the reference chunked decode and the finality rule the streaming decoder uses."""

from __future__ import annotations

import functools

from services.vocoder.diffrhythm2.windows import WINDOWS
from services.vocoder.windows import Paste


@functools.cache
def _sources(total: int) -> tuple[tuple[int, int], ...]:
    """(start, length) of the window that ends up at each frame, pasting the reference windows in order."""
    source = [(-1, 0)] * total
    for paste in WINDOWS.pastes(total):
        for frame in range(paste.start + paste.keep_from, paste.start + paste.keep_to):
            source[frame] = (paste.start, paste.frames)
    return tuple(source)


def test_reference_layout_for_the_fixture_length():
    assert WINDOWS.pastes(30) == [Paste(0, 20, 0, 18), Paste(10, 20, 2, 20)]
    assert WINDOWS.pastes(20) == [Paste(0, 20, 0, 20)]
    assert WINDOWS.pastes(35) == [Paste(0, 20, 0, 18), Paste(15, 20, 2, 20)]
    assert WINDOWS.pastes(7) == [Paste(0, 7, 0, 7)]
    assert WINDOWS.pastes(0) == []


def test_every_frame_is_covered_and_windows_stay_inside_the_song():
    for total in range(1, 200):
        assert (-1, 0) not in _sources(total)
        for paste in WINDOWS.pastes(total):
            assert paste.start >= 0 and paste.start + paste.frames <= total


def test_final_frame_count_is_exactly_the_frames_no_longer_length_can_change():
    """Brute force: a frame is final after `received` frames iff every song length >= received takes
    it from the same window (same start, same length); the final frames form a prefix."""
    horizon = 60
    for received in range(0, 160):
        lengths = range(max(received, 1), received + horizon)
        final = [
            frame for frame in range(received) if len({_sources(total)[frame] for total in lengths}) == 1
        ]
        assert final == list(range(WINDOWS.final_frame_count(received))), received
