"""DiffRhythm 2's decode windows: 20 frames with hop 15 (overlap 5), as the reference decodes them
(the layout and the finality rule are the stage's, in services/vocoder/windows.py)."""

from __future__ import annotations

from services.vocoder.windows import ChunkPlan

WINDOWS = ChunkPlan(window_frames=20, overlap_frames=5)
WINDOW_FRAMES = WINDOWS.window_frames
