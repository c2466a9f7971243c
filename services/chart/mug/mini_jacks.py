"""The reference's clean-up of unplayable "mini-jacks" (two notes in one column too close together).

It works on the (snapped) list in order and edits it in place: a moved note keeps its place in the
list with a new column; a removed note leaves a hole that every search skips. For each object i
(start s, column c), with J the jack interval (90 ms by default):

1. Earlier jacks: walking back from i - 1, the objects in column c until the first object of any
   column that starts more than J from s (|start - s| <= J counts as inside). None: next object.
2. If nothing at all starts after i within 2J of s and at least 10 ms from s, leave it (the end of a
   stream).
3. Try to move i itself (not if it is a long note), then the nearest earlier jack p: a note in
   column 0 or 1 tries the other of 0/1, then 2, then 3; one in column 2 or 3 the other of 2/3, then
   1, then 0. A column is refused when its latest long note starting at or before the time ends at or
   after time - 50 ms, or when it has an object within J before or after (same walking rule). The
   first accepted column wins.
4. Otherwise remove one: h = 1 + the objects of any column within 10 ms around i (h_i) or around
   p (h_p). A tap i with h_i > 1 and h_i >= h_p goes; else p when h_p > 1 and h_p >= h_i; else p
   when i is a long note; else i.
"""

from __future__ import annotations

from dataclasses import replace

from services.chart.engine import HitObject

DEFAULT_JACK_INTERVAL_MS = 90
CHORD_WINDOW_MS = 10
LONG_NOTE_RELEASE_MS = 50
ANY_COLUMN = -1


class _Chart:
    """The list being cleaned, with holes where notes were removed."""

    def __init__(self, objects: list[HitObject]) -> None:
        self.slots: list[HitObject | None] = list(objects)

    def neighbours(
        self, index: int, time: float, window: float, column: int, backward: bool, forward: bool
    ) -> list[tuple[int, HitObject]]:
        """Objects in `column` (or any) next to `index` and within `window` of `time`; each walk stops
        at the first object of any column outside the window."""
        found = []
        if backward:
            for other in range(index - 1, -1, -1):
                hit = self.slots[other]
                if hit is None:
                    continue
                if abs(hit.start_ms - time) > window:
                    break
                if column == ANY_COLUMN or hit.column == column:
                    found.append((other, hit))
        if forward:
            for other in range(index + 1, len(self.slots)):
                hit = self.slots[other]
                if hit is None:
                    continue
                if abs(hit.start_ms - time) > window:
                    break
                if column == ANY_COLUMN or hit.column == column:
                    found.append((other, hit))
        return found

    def long_note_blocks(self, index: int, column: int, time: float) -> bool:
        """True when the latest earlier long note in `column` starting at or before `time` is still
        held (ends at or after time - 50 ms)."""
        for other in range(index - 1, -1, -1):
            hit = self.slots[other]
            if hit is None or hit.end_ms is None:
                continue
            if hit.column == column and hit.start_ms <= time:
                return hit.end_ms >= time - LONG_NOTE_RELEASE_MS
        return False

    def try_move(self, index: int, interval: float) -> bool:
        """Move the object at `index` to the first free column in the reference's order."""
        hit = self.slots[index]
        targets = (1 - hit.column, 2, 3) if hit.column in (0, 1) else (5 - hit.column, 1, 0)
        for target in targets:
            if self.long_note_blocks(index, target, hit.start_ms):
                continue
            if not self.neighbours(index, hit.start_ms, interval, target, backward=True, forward=True):
                self.slots[index] = replace(hit, column=target)
                return True
        return False

    def crowd(self, index: int) -> int:
        """1 + the objects of any column within 10 ms of the object at `index`."""
        hit = self.slots[index]
        return 1 + len(self.neighbours(index, hit.start_ms, CHORD_WINDOW_MS, ANY_COLUMN, True, True))


def remove_mini_jacks(
    objects: list[HitObject], interval: float = DEFAULT_JACK_INTERVAL_MS
) -> list[HitObject]:
    """`objects` (sorted by start) with the reference's mini-jack moves and removals applied."""
    chart = _Chart(objects)
    for index in range(len(chart.slots)):
        hit = chart.slots[index]
        earlier = chart.neighbours(index, hit.start_ms, interval, hit.column, backward=True, forward=False)
        if not earlier:
            continue
        later = chart.neighbours(index, hit.start_ms, interval * 2, ANY_COLUMN, backward=False, forward=True)
        if not any(abs(other.start_ms - hit.start_ms) >= CHORD_WINDOW_MS for _, other in later):
            continue
        previous_index = earlier[0][0]
        if not hit.is_long and chart.try_move(index, interval):
            continue
        if chart.try_move(previous_index, interval):
            continue
        crowd_here, crowd_previous = chart.crowd(index), chart.crowd(previous_index)
        if crowd_here > 1 and crowd_here >= crowd_previous and not hit.is_long:
            chart.slots[index] = None
        elif (crowd_previous > 1 and crowd_previous >= crowd_here) or hit.is_long:
            chart.slots[previous_index] = None
        else:
            chart.slots[index] = None
    return [hit for hit in chart.slots if hit is not None]
