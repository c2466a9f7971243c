"""A bounded, thread-safe least-recently-used cache of prompt embeddings (prompts repeat a lot)."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np


class TextEmbeddingCache:
    """Maps prompt -> vector, evicting the least recently used entry beyond `capacity` (0: off)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError("cache capacity must be >= 0")
        self.capacity = capacity
        self._entries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, prompt: str) -> np.ndarray | None:
        """A copy of the cached vector (marking it recently used), or None."""
        with self._lock:
            vector = self._entries.get(prompt)
            if vector is None:
                self.misses += 1
                return None
            self._entries.move_to_end(prompt)
            self.hits += 1
            return vector.copy()

    def put(self, prompt: str, vector: np.ndarray) -> None:
        """Store a copy of `vector`, evicting the oldest entries past capacity."""
        if self.capacity == 0:
            return
        with self._lock:
            self._entries[prompt] = vector.copy()
            self._entries.move_to_end(prompt)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        """Number of cached prompts."""
        with self._lock:
            return len(self._entries)
