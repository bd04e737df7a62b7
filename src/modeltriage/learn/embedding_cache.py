"""Embed each distinct text once, in chunks, behind a progress bar.

An evaluation routes the test rows, the held-out rows and several routers built over
overlapping exemplar sets: sharing one embedding pass is most of its speed.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from modeltriage.core.encoders import Encoder, Vectors

EMBED_CHUNK = 512


class _Bar(Protocol):
    def update(self, n: int) -> object: ...

    def close(self) -> None: ...


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, description: str, enabled: bool = True) -> _Bar:
    """A tqdm bar on stderr (shown only when stderr is a terminal), or a silent stand-in.
    tqdm comes with sentence-transformers but is no dependency of modeltriage's own."""
    if not enabled or total == 0:
        return _NoBar()
    try:
        tqdm = importlib.import_module("tqdm").tqdm
    except ImportError:
        return _NoBar()
    bar: _Bar = tqdm(total=total, desc=description, unit="text", file=sys.stderr, disable=None)
    return bar


class CachingEncoder:
    """An encoder that embeds each distinct text once, in chunks, with a progress bar.

    The test rows, the held-out rows and the routers built over overlapping exemplar sets
    then share a single embedding pass: embedding is nearly all of an evaluation's time.
    """

    def __init__(
        self, encoder: Encoder, *, chunk_size: int = EMBED_CHUNK, progress: bool = True
    ) -> None:
        self._encoder = encoder
        self._chunk_size = chunk_size
        self._progress = progress
        self._vectors: dict[str, Vectors] = {}

    @property
    def model_id(self) -> str:
        return self._encoder.model_id

    @property
    def dim(self) -> int:
        return self._encoder.dim

    @property
    def cached(self) -> int:
        return len(self._vectors)

    def embed(self, texts: Sequence[str], description: str = "embedding") -> int:
        """Embed the texts not seen yet; returns how many that was."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        bar = progress_bar(len(todo), description, self._progress)
        try:
            for start in range(0, len(todo), self._chunk_size):
                chunk = todo[start : start + self._chunk_size]
                vectors = self._encoder.encode(chunk)
                if vectors.shape != (len(chunk), self.dim):
                    raise ValueError(
                        f"encoder {self.model_id} returned shape {vectors.shape}, "
                        f"expected ({len(chunk)}, {self.dim})"
                    )
                self._vectors.update(zip(chunk, vectors, strict=True))
                bar.update(len(chunk))
        finally:
            bar.close()
        return len(todo)

    def encode(self, texts: Sequence[str]) -> Vectors:
        self.embed(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.ascontiguousarray(np.stack([self._vectors[t] for t in texts]), dtype=np.float32)
