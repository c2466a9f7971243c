"""MuQ-MuLan in the style stage: the 512-d joint music/text space DiffRhythm is conditioned on."""
