"""From decoded note logits to osu!mania hit objects (4 keys).

The note array has 4 channels per key: 0-3 note start (a logit, > 0 means a note starts in this
frame), 4-7 the start's offset within the frame, 8-11 holding, 12-15 the end's offset. Per column c,
for every frame f whose start logit is > 0: the start time is round((f + clip(offset, 0, 1)) x
frame_ms) in float64 with half-to-even rounding; unless f is the last frame, the note is held while
the next frames have holding > 0 and no new start; if that walk moved, it is a long note ending at
round((e + clip(end offset[e], 0, 1)) x frame_ms). Objects are listed column by column and then
stably sorted by start time. Notes in the zero-padded tail after the song's end are kept, as in the
reference.
"""

from __future__ import annotations

import numpy as np

from services.chart.engine import HitObject

KEYS = 4
NOTE_CHANNELS = 4 * KEYS


def _time_ms(frame: int, offset: np.float32, frame_ms: float) -> int:
    return round((frame + float(np.clip(offset, 0, 1))) * frame_ms)


def notes_to_hit_objects(notes: np.ndarray, frame_ms: float) -> list[HitObject]:
    """The hit objects in decoded notes [16, frames] (float32), sorted by start time."""
    if notes.shape[0] != NOTE_CHANNELS:
        raise ValueError(f"notes must have {NOTE_CHANNELS} channels, got {notes.shape}")
    frames = notes.shape[1]
    objects = []
    for column in range(KEYS):
        starts, start_offsets = notes[column], notes[column + KEYS]
        holding, end_offsets = notes[column + 2 * KEYS], notes[column + 3 * KEYS]
        for frame in np.flatnonzero(starts > 0).tolist():
            start = _time_ms(frame, start_offsets[frame], frame_ms)
            end = None
            if frame != frames - 1:
                walk = frame + 1
                while walk < frames and holding[walk] > 0 and not starts[walk] > 0:
                    walk += 1
                if walk - 1 != frame:
                    end = _time_ms(walk - 1, end_offsets[walk - 1], frame_ms)
            objects.append(HitObject(column, start, end))
    return sorted(objects, key=lambda hit: hit.start_ms)
