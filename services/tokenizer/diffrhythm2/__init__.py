"""DiffRhythm 2 lyrics: structure tags and lines into the flat phoneme token sequence."""
