"""Choosing one step's codes from the LM's logits: guidance, then greedy or sampling, in the reference's
order (transformers' MusicGen `generate`), so that seeded runs give the reference's codes.

1. Guidance (when cfg > 1): `uncond + (cond - uncond) * cfg`, float32.
2. Greedy: argmax per codebook (ties go to the lowest index). Nothing is drawn.
3. Sampling: divide by the temperature (skipped at exactly 1.0); keep every logit >= the k-th largest;
   with 0 < top_p < 1 keep the smallest set of largest logits whose probability exceeds top_p;
   softmax; then one draw per step over all codebooks: torch's one-sample multinomial draws one Exp(1)
   variate per entry of the [K, V] matrix, row by row, and takes argmax(p / q). We draw those variates
   ourselves from the song's CPU generator (so every device draws the same numbers) and take the same
   argmax, which equals `torch.multinomial(probs, 1)` with that generator. Variates are drawn for every
   step, whatever the options, so the stream stays aligned with the steps.
"""

from __future__ import annotations

import torch

from services.diffusion.musicgen.options import MusicgenOptions

# Steps of variates skipped per call when a resumed song fast-forwards its generator.
SKIP_CHUNK_STEPS = 256
# Steps of variates drawn (and moved to the device) at a time.
STEPS_AHEAD = 64


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


class VariateStream:
    """A song's Exp(1) variates, [K, V] per step, drawn in order from its CPU generator.

    The variates of `steps_ahead` steps are drawn in one call (a generator gives the same numbers
    drawn at once as drawn step by step) and moved to the device together, so a GPU step does not
    wait on a host-to-device copy."""

    def __init__(
        self, seed: int, rows: int, vocab_size: int, device: torch.device, steps_ahead: int = STEPS_AHEAD
    ) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self.rows = rows
        self.vocab_size = vocab_size
        self.device = device
        self.steps_ahead = steps_ahead
        self._buffer: torch.Tensor | None = None
        self._next = 0

    def skip(self, steps: int) -> None:
        """Advance past `steps` steps' draws (a resumed song continues the same stream)."""
        for done in range(0, steps, SKIP_CHUNK_STEPS):
            count = min(SKIP_CHUNK_STEPS, steps - done)
            torch.empty(count * self.rows * self.vocab_size).exponential_(generator=self.generator)

    def next(self) -> torch.Tensor:
        """The next step's variates [K, V] on the device."""
        if self._buffer is None or self._next == self._buffer.shape[0]:
            drawn = torch.empty((self.steps_ahead, self.rows, self.vocab_size)).exponential_(
                generator=self.generator
            )
            self._buffer = drawn.to(self.device)
            self._next = 0
        self._next += 1
        return self._buffer[self._next - 1]


def choose_codes(
    guided: torch.Tensor, options: MusicgenOptions, variates: VariateStream | None
) -> torch.Tensor:
    """One step's codes [K] from guided logits [K, V]; takes the step's variates unless greedy."""
    if options.greedy:
        return guided.argmax(dim=-1)
    probs = filter_logits(guided, options).softmax(dim=-1)
    return (probs / variates.next()).argmax(dim=-1)
