"""The style encoder stage: our own MuQ-MuLan inference (prompts and recordings to 512-d vectors)."""
