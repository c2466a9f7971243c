"""The beat grid of a chart (one BPM and offset for the whole song) and snapping notes to it.

The search is the reference's, step for step, because its result depends on the order: a time is
"on the grid" (bpm, offset, div) when its distance to the nearest grid line, in grid units, is below
10 ms / gap (gap = 60000 / (bpm div)); a candidate scores (number on the grid) / bpm. "Refining" a
candidate with at least two times on the grid fits a weighted least-squares line (weights: on the
grid or not, with intercept) of the times against their rounded grid indices: offset = intercept,
bpm = 60000 / slope / 4, then doubled while below 150 and halved while 300 or more (a zero or
non-finite slope keeps the candidate). The reference uses scikit-learn's LinearRegression; the same
float64 steps here (weighted means, centring, rows scaled by sqrt(weight), LAPACK least squares via
scipy) give its pair bit for bit, so the timing line's text matches too.

Search: starting from the first note's time, every bpm of numpy's arange(150, 300, 0.1) is scored
(div 1); a better score is refined and kept. Still inside that loop, offsets going back one beat in
quarter beats from the best offset are tried at the bpm returned by the last scoring call, refining
and keeping any better one (each trial uses the bpm the previous call returned).

Snapping a time t: for div in 1, 2, 4, 3, 6, 8, 16, 32 the nearest grid line is taken when t is
within 10 ms of it (int() of the line's time), else t is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

EPSILON_MS = 10
MIN_BPM = 150
MAX_BPM = 300
BPM_STEP = 0.1
SNAP_DIVISORS = (1, 2, 4, 3, 6, 8, 16, 32)
FALLBACK_BPM = 120


@dataclass(frozen=True)
class Grid:
    """One red timing line: `bpm` and `offset_ms` (a float when fitted; the int 0 for the fallback
    grid of a chart without notes, printed as `0` as the reference does)."""

    bpm: float
    offset_ms: float | int

    def timing_point(self) -> str:
        """The `[TimingPoints]` line: offset, beat length (ms), 4/4, soft samples, volume 20, red."""
        return f"{_number(self.offset_ms)},{_number(60000 / self.bpm)},4,2,1,20,1,0"


FALLBACK_GRID = Grid(FALLBACK_BPM, 0)


def _number(value: float | int) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def _score(times: np.ndarray, bpm: float, offset: float, refine: bool) -> tuple[float, float, float]:
    """(score, bpm, offset) of the candidate; refined when asked and possible."""
    gap = 60 * 1000 / bpm
    meters = (times - offset) / gap
    rounded = np.round(meters)
    on_grid = np.abs(meters - rounded) < EPSILON_MS / gap
    count = int(np.count_nonzero(on_grid))
    score = count / bpm
    if not refine or count < 2:
        return score, bpm, offset
    weights = on_grid.astype(np.float64)
    mean_meter = np.multiply(rounded, weights).sum() / weights.sum()
    mean_time = np.multiply(times, weights).sum() / weights.sum()
    root = np.sqrt(weights)
    centred_meters = ((rounded - mean_meter) * root)[:, None]
    slope = scipy.linalg.lstsq(centred_meters, (times - mean_time) * root)[0][0]
    if not np.isfinite(slope) or slope == 0:
        return score, bpm, offset
    fitted_bpm = 60000 / slope / 4
    while fitted_bpm < MIN_BPM:
        fitted_bpm *= 2
    while fitted_bpm >= MAX_BPM:
        fitted_bpm /= 2
    return score, float(fitted_bpm), float(mean_time - slope * mean_meter)


def fit_grid(start_times: list[int]) -> Grid:
    """The reference's best (bpm, offset) for these note start times; FALLBACK_GRID without notes."""
    if not start_times:
        return FALLBACK_GRID
    times = np.asarray(start_times, dtype=np.float64)
    first = float(times[0])
    best_score, best_bpm, best_offset = -1.0, 0.0, first
    for test_bpm in np.arange(MIN_BPM, MAX_BPM, BPM_STEP):
        score, bpm, _ = _score(times, float(test_bpm), first, refine=False)
        if score > best_score:
            best_score, best_bpm, best_offset = _score(times, float(test_bpm), first, refine=True)
            bpm = best_bpm
        gap = 60000 / bpm
        for test_offset in np.arange(best_offset, best_offset - gap, -gap / 4):
            score, bpm, _ = _score(times, bpm, float(test_offset), refine=False)
            if score > best_score:
                best_score, best_bpm, best_offset = _score(times, bpm, float(test_offset), refine=True)
                bpm = best_bpm
    return Grid(best_bpm, best_offset)


def snap(time_ms: int, grid: Grid) -> int:
    """`time_ms` moved onto the finest-needed grid line within 10 ms, or unchanged."""
    for divisor in SNAP_DIVISORS:
        gap = 60 * 1000 / (grid.bpm * divisor)
        meter = (time_ms - grid.offset_ms) / gap
        nearest = round(meter)
        if abs(meter - nearest) < EPSILON_MS / gap:
            return int(nearest * gap + grid.offset_ms)
    return time_ms
