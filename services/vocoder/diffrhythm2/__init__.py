"""DiffRhythm 2 in the vocoder stage: the BigVGAN-v2 decoder and its streaming windows."""
