"""An LRU cache of request vectors in front of an encoder: FAQ-like traffic repeats its
texts, and a repeat then costs a dictionary lookup instead of a model run."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from modeltriage.core.encoders import Encoder, Vectors


@dataclass(frozen=True)
class CacheStats:
    size: int
    capacity: int
    hits: int
    misses: int

    @property
    def hit_rate(self) -> float | None:
        """Hits over lookups; None before the first lookup."""
        lookups = self.hits + self.misses
        return None if lookups == 0 else self.hits / lookups


class QueryCache:
    """An ``Encoder`` that remembers the vectors of the last ``capacity`` texts.

    Thread-safe: the service encodes from a worker thread while /healthz reads the
    counters. ``capacity`` 0 passes every call through (and counts nothing)."""

    def __init__(self, encoder: Encoder, capacity: int) -> None:
        self._encoder = encoder
        self._capacity = capacity
        self._vectors: OrderedDict[str, Vectors] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    @property
    def model_id(self) -> str:
        return self._encoder.model_id

    @property
    def dim(self) -> int:
        return self._encoder.dim

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(len(self._vectors), self._capacity, self._hits, self._misses)

    def encode(self, texts: Sequence[str]) -> Vectors:
        if self._capacity == 0:
            return self._encoder.encode(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        with self._lock:
            for row, text in enumerate(texts):
                found = self._vectors.get(text)
                if found is None:
                    missing.setdefault(text, []).append(row)
                    continue
                self._vectors.move_to_end(text)
                out[row] = found
            self._misses += sum(len(rows) for rows in missing.values())
            self._hits += len(texts) - sum(len(rows) for rows in missing.values())
        if not missing:
            return out
        # Encoded outside the lock: a slow model run must not block cache hits.
        fresh = self._encoder.encode(list(missing))
        with self._lock:
            for (text, rows), vector in zip(missing.items(), fresh, strict=True):
                out[rows] = vector
                self._vectors[text] = vector.copy()
                self._vectors.move_to_end(text)
            while len(self._vectors) > self._capacity:
                self._vectors.popitem(last=False)
        return out
