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


class BatchKVCache:
    """The key/value cache of a batch of songs: one row per song and guidance branch, each with its
    own history length, in shared per-layer buffers [row capacity, heads, capacity, head_dim].

    The rows in use are 0..rows-1, so a pass over all of them attends to plain views of the buffers
    (no gather, no copy of any history). A pass writes each row's keys and values right after that
    row's own history; when the rows' histories differ in length, the views reach to the longest
    one and `begin_pass` returns the mask that hides every row's padding. The buffers start zeroed,
    so padding is always finite and a masked key contributes exactly nothing. A row that leaves is
    filled by moving the last row into it (one row's copy), which keeps the rows in use contiguous.
    """

    def __init__(
        self, depth: int, heads: int, head_dim: int, device: torch.device | str, dtype: torch.dtype
    ) -> None:
        """An empty cache; rows and capacity are added as songs join."""
        self.rows = 0
        self.lengths: list[int] = []
        self.capacity = 0
        self._row_capacity = 0
        self._depth, self._heads, self._head_dim = depth, heads, head_dim
        self._device, self._dtype = torch.device(device), dtype
        self._keys: list[torch.Tensor] = []
        self._values: list[torch.Tensor] = []
        self._start = self._stop = 0
        self._uniform = True
        self._write_rows: torch.Tensor | None = None
        self._write_positions: torch.Tensor | None = None
        self._span = 0

    def _resize(self, row_capacity: int, capacity: int) -> None:
        shape = (row_capacity, self._heads, capacity, self._head_dim)
        for store in (self._keys, self._values):
            for layer in range(self._depth):
                new = torch.zeros(shape, device=self._device, dtype=self._dtype)
                if layer < len(store):
                    new[: self.rows, :, : self.capacity] = store[layer][: self.rows, :, : self.capacity]
                    store[layer] = new
                else:
                    store.append(new)
        self._row_capacity, self.capacity = row_capacity, capacity

    def reserve(self, rows: int, positions: int) -> None:
        """Make room for `rows` rows of `positions` keys each (songs joining together reserve once,
        so the buffers grow at most once per join); growth at least doubles."""
        row_capacity, capacity = self._row_capacity, self.capacity
        if rows > row_capacity:
            row_capacity = max(rows, 2 * row_capacity)
        if positions > capacity:
            capacity = max(positions, 2 * capacity)
        if (row_capacity, capacity) != (self._row_capacity, self.capacity):
            self._resize(row_capacity, capacity)

    def add_rows(self, count: int, positions: int) -> range:
        """Rows for a joining song (history 0), each able to hold `positions` keys."""
        needed_rows = self.rows + count
        self.reserve(needed_rows, positions)
        added = range(self.rows, needed_rows)
        self.rows = needed_rows
        self.lengths.extend(0 for _ in added)
        return added

    def remove_row(self, row: int) -> int | None:
        """Free `row`; the last row moves into it. Returns the moved row's old index (None when
        `row` was the last)."""
        last = self.rows - 1
        moved = None
        if row != last:
            length = self.lengths[last]
            for store in (self._keys, self._values):
                for buffer in store:
                    buffer[row, :, :length] = buffer[last, :, :length]
            self.lengths[row] = length
            moved = last
        self.lengths.pop()
        self.rows -= 1
        return moved

    def begin_pass(self, start: int, stop: int, tokens: int) -> torch.Tensor | None:
        """Aim the next forward at rows start..stop-1, each adding `tokens` keys after its history;
        returns the attention mask [rows, 1, 1, keys] the forward needs, or None when every row has
        the same history length (then nothing is padded)."""
        lengths = self.lengths[start:stop]
        self._start, self._stop = start, stop
        self._span = max(lengths) + tokens
        if self._span > self.capacity:
            self._resize(self._row_capacity, max(self._span, 2 * self.capacity))
        self._uniform = min(lengths) == max(lengths)
        if self._uniform:
            return None
        history = torch.tensor(lengths, device=self._device)
        self._write_rows = torch.arange(start, stop, device=self._device)[:, None]
        self._write_positions = history[:, None] + torch.arange(tokens, device=self._device)
        keys = torch.arange(self._span, device=self._device)
        return (keys[None, :] < (history + tokens)[:, None])[:, None, None, :]

    def extend(
        self, layer: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this pass's [rows, H, N, D] keys/values after each row's history; return the views
        of the pass's rows up to the longest history plus this pass."""
        key_buffer, value_buffer = self._keys[layer], self._values[layer]
        if self._uniform:
            begin = self.lengths[self._start]
            key_buffer[self._start : self._stop, :, begin : self._span] = keys
            value_buffer[self._start : self._stop, :, begin : self._span] = values
        else:
            key_buffer[self._write_rows, :, self._write_positions] = keys.transpose(1, 2)
            value_buffer[self._write_rows, :, self._write_positions] = values.transpose(1, 2)
        rows = slice(self._start, self._stop)
        return key_buffer[rows, :, : self._span], value_buffer[rows, :, : self._span]

    def commit(self, rows: list[int], count: int) -> None:
        """Make the last pass's `count` positions of `rows` part of their history."""
        for row in rows:
            self.lengths[row] += count
