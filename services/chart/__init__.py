"""The chart stage: osu!mania charts for a song (Mug-Diffusion), served after the vocoder."""
