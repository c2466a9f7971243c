"""The sampler's key/value cache: lyric prefix and finished blocks, kept in buffers that grow rarely.

Each layer owns one key and one value buffer of shape [rows, heads, capacity, head_dim]; row 0 is
the conditional context and row 1 (when guidance is on) the unconditional one. The first `length`
positions hold the context: the lyric prefix, then every finished block in order. A forward pass
writes its own keys and values right after the context and attends over the buffer up to its end,
so no tensor is concatenated or copied to extend the context. The pass's entries become context
only when the sampler calls `commit`; otherwise the next pass overwrites them. Capacity doubles when
a pass would not fit, so a song of any length costs a logarithmic number of copies.
"""

from __future__ import annotations

import torch


class BlockKVCache:
    """Per-layer key/value buffers with a committed context length (see the module docstring)."""

    def __init__(
        self,
        depth: int,
        rows: int,
        heads: int,
        head_dim: int,
        capacity: int,
        device: torch.device | str,
        dtype: torch.dtype,
    ) -> None:
        """Allocate buffers for `capacity` positions (a hint: the cache grows past it when needed)."""
        self.length = 0
        self.capacity = max(capacity, 1)
        shape = (rows, heads, self.capacity, head_dim)
        self._keys = [torch.empty(shape, device=device, dtype=dtype) for _ in range(depth)]
        self._values = [torch.empty(shape, device=device, dtype=dtype) for _ in range(depth)]
        self.grow_count = 0

    def _grow(self, needed: int) -> None:
        capacity = max(needed, 2 * self.capacity)
        for store in (self._keys, self._values):
            for layer, old in enumerate(store):
                new = old.new_empty((*old.shape[:2], capacity, old.shape[3]))
                new[:, :, : self.length] = old[:, :, : self.length]
                store[layer] = new
        self.capacity = capacity
        self.grow_count += 1

    def extend(
        self, layer: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this pass's [rows, H, N, D] keys/values after the context; return context plus them."""
        end = self.length + keys.shape[2]
        if end > self.capacity:
            self._grow(end)
        self._keys[layer][:, :, self.length : end] = keys
        self._values[layer][:, :, self.length : end] = values
        return self._keys[layer][:, :, :end], self._values[layer][:, :, :end]

    def commit(self, count: int) -> None:
        """Make the last pass's `count` positions part of the context."""
        if self.length + count > self.capacity:
            raise ValueError("commit past the written positions")
        self.length += count
