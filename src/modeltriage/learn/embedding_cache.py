"""Embed each distinct text once, in chunks, behind a progress bar.

An evaluation routes the test rows, the held-out rows and several routers built over
overlapping exemplar sets: sharing one embedding pass is most of its speed. With a
``store`` (:func:`disk_store`), vectors also persist under the cache directory, keyed by
encoder id and text digest, so a second run embeds nothing.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
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


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def disk_store(model_id: str, root: Path | None = None) -> Path:
    """Where vectors of encoder ``model_id`` are kept: an ``.npz`` file under
    :func:`modeltriage.core.onnx_files.cache_root` (never in the repository)."""
    from modeltriage.core.onnx_files import cache_root

    base = cache_root() if root is None else root
    return base / "embeddings" / f"{_digest(model_id)[:16]}.npz"


def load_store(path: Path) -> dict[str, Vectors]:
    """Vectors by text digest; empty when the file is missing or unreadable."""
    try:
        with np.load(path) as data:
            keys, vectors = data["keys"], data["vectors"]
    except (OSError, KeyError, ValueError):
        return {}
    return {str(k): v for k, v in zip(keys, vectors, strict=True)}


def save_store(path: Path, vectors: dict[str, Vectors]) -> None:
    """Write atomically (a temporary file renamed), so a killed run leaves no half file."""
    if not vectors:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = np.array(list(vectors))
    stacked = np.stack(list(vectors.values())).astype(np.float32)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, keys=keys, vectors=stacked)
    os.replace(tmp, path)


class CachingEncoder:
    """An encoder that embeds each distinct text once, in chunks, with a progress bar.

    The test rows, the held-out rows and the routers built over overlapping exemplar sets
    then share a single embedding pass: embedding is nearly all of an evaluation's time.
    """

    def __init__(
        self,
        encoder: Encoder,
        *,
        chunk_size: int = EMBED_CHUNK,
        progress: bool = True,
        store: Path | None = None,
    ) -> None:
        self._encoder = encoder
        self._chunk_size = chunk_size
        self._progress = progress
        self._vectors: dict[str, Vectors] = {}
        self._store = store
        self._stored: dict[str, Vectors] = {} if store is None else load_store(store)

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
        if self._stored:
            for text in todo:
                found = self._stored.get(_digest(text))
                if found is not None and found.shape == (self.dim,):
                    self._vectors[text] = found
            todo = [t for t in todo if t not in self._vectors]
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
                if self._store is not None:
                    self._stored.update(zip(map(_digest, chunk), vectors, strict=True))
                    save_store(self._store, self._stored)
                bar.update(len(chunk))
        finally:
            bar.close()
        return len(todo)

    def encode(self, texts: Sequence[str]) -> Vectors:
        self.embed(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.ascontiguousarray(np.stack([self._vectors[t] for t in texts]), dtype=np.float32)
