"""Choosing one step's codes from the LM's logits: guidance, then greedy or sampling, in the reference's
order (transformers' MusicGen `generate`), so that seeded runs give the reference's codes.

1. Guidance (when cfg > 1): `uncond + (cond - uncond) * cfg`, float32.
2. Greedy: argmax per codebook (ties go to the lowest index). Nothing is drawn.
3. Sampling: divide by the temperature (skipped at exactly 1.0); keep every logit >= the k-th largest;
   with 0 < top_p < 1 keep the smallest set of largest logits whose probability exceeds top_p;
   softmax; then one draw per step over all codebooks: torch's one-sample multinomial draws one Exp(1)
   variate per entry of the [K, V] matrix, row by row, and takes argmax(p / q). We draw those variates
   ourselves from the song's CPU generator (so every device draws the same numbers) and take the same
   argmax, which equals `torch.multinomial(probs, 1)` with that generator.
"""

from __future__ import annotations

import torch

from services.diffusion.musicgen.options import MusicgenOptions

# Steps of variates skipped per call when a resumed song fast-forwards its generator.
SKIP_CHUNK_STEPS = 256


def guide(cond: torch.Tensor, uncond: torch.Tensor | None, cfg: float) -> torch.Tensor:
    """Guided logits [K, V] from the conditional and (when guidance is on) unconditional logits."""
    if uncond is None:
        return cond
    return uncond + (cond - uncond) * cfg


def filter_logits(logits: torch.Tensor, options: MusicgenOptions) -> torch.Tensor:
    """Temperature, top-k and top-p applied to logits [K, V] (removed entries become -inf)."""
    if options.temperature != 1.0:
        logits = logits / options.temperature
    top_k = min(options.top_k, logits.shape[-1])
    threshold = torch.topk(logits, top_k)[0][..., -1, None]
    logits = logits.masked_fill(logits < threshold, -float("inf"))
    if 0.0 < options.top_p < 1.0:
        ascending, order = torch.sort(logits, descending=False)
        cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - options.top_p)
        remove[..., -1:] = False
        logits = logits.masked_fill(remove.scatter(1, order, remove), -float("inf"))
    return logits


def draw_variates(generator: torch.Generator, rows: int, vocab_size: int) -> torch.Tensor:
    """One step's Exp(1) variates [rows, V] from a song's CPU generator (what multinomial would draw)."""
    return torch.empty((rows, vocab_size), dtype=torch.float32).exponential_(generator=generator)


def skip_steps(generator: torch.Generator, steps: int, rows: int, vocab_size: int) -> None:
    """Advance `generator` past `steps` steps' draws (a resumed song continues the same stream)."""
    for done in range(0, steps, SKIP_CHUNK_STEPS):
        count = min(SKIP_CHUNK_STEPS, steps - done)
        torch.empty(count * rows * vocab_size, dtype=torch.float32).exponential_(generator=generator)


def choose_codes(
    guided: torch.Tensor, options: MusicgenOptions, generator: torch.Generator | None
) -> torch.Tensor:
    """One step's codes [K] from guided logits [K, V]; draws from `generator` unless greedy."""
    if options.greedy:
        return guided.argmax(dim=-1)
    probs = filter_logits(guided, options).softmax(dim=-1)
    variates = draw_variates(generator, probs.shape[0], probs.shape[1]).to(probs.device)
    return (probs / variates).argmax(dim=-1)
