"""DiffRhythm 2 in the generation stage: the DiT and the block flow matching sampler."""
