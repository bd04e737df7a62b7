"""The vector index behind the exemplar index: the ``VectorIndex`` protocol, FAISS (exact
or approximate, memory-mapped when read) and the deterministic numpy stand-in for tests.
What is stored beside the vectors, and when an index is stale, is :mod:`.index`'s."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from modeltriage.core.encoders import Vectors
from modeltriage.errors import MissingDependencyError


class VectorIndex(Protocol):
    """Nearest-neighbour search over unit vectors by inner product."""

    @property
    def size(self) -> int: ...

    def search(self, queries: Vectors, k: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]: ...

    def save(self, path: Path) -> None: ...


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise MissingDependencyError("faiss-cpu", None) from None
    # distance_compute_blas_threshold is left at faiss's default: measured with faiss
    # 1.15.1, 20 vs 4 vs 1 made no difference from 1 to 3,100 queries (docs/benchmarks.md).
    return faiss


def limit_search_threads(threads: int) -> None:
    """FAISS's OpenMP threads for searches made by the calling thread (OpenMP keeps the
    setting per thread, so the thread that searches must call this)."""
    _faiss().omp_set_num_threads(threads)


class FaissIndex:
    """A FAISS inner-product index: exact (``IndexFlatIP``) or approximate, as
    :func:`modeltriage.core.ann.plan_for` chose by size."""

    def __init__(self, index: Any) -> None:
        self._index = index

    @classmethod
    def from_vectors(cls, vectors: Vectors) -> FaissIndex:
        faiss = _faiss()
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return cls(index)

    @classmethod
    def read(cls, path: Path) -> FaissIndex:
        faiss = _faiss()
        # Memory-mapped, read-only: workers serving one build share its pages instead of
        # each holding a copy (docs/benchmarks.md, "Several workers").
        flag = getattr(faiss, "IO_FLAG_MMAP_IFC", faiss.IO_FLAG_MMAP)
        return cls(faiss.read_index(str(path), flag))

    @property
    def size(self) -> int:
        return int(self._index.ntotal)

    def search(self, queries: Vectors, k: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        k = min(k, self.size)
        scores, ids = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores, ids

    def save(self, path: Path) -> None:
        _faiss().write_index(self._index, str(path))

    def vectors(self) -> Vectors:
        """The stored vectors, in index order (what `lint` compares, never re-embedded)."""
        return np.asarray(self._index.reconstruct_n(0, self.size), dtype=np.float32)


class NumpyIndex:
    """Brute-force numpy index: the deterministic stand-in for FAISS in unit tests."""

    def __init__(self, vectors: Vectors) -> None:
        self._vectors = np.ascontiguousarray(vectors, dtype=np.float32)

    @classmethod
    def from_vectors(cls, vectors: Vectors) -> NumpyIndex:
        return cls(vectors)

    @property
    def size(self) -> int:
        return int(self._vectors.shape[0])

    def search(self, queries: Vectors, k: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        k = min(k, self.size)
        sims = queries @ self._vectors.T
        # Stable sort on -similarity: ties keep index order, like FAISS.
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(sims, order, axis=1).astype(np.float32), order.astype(np.int64)

    def save(self, path: Path) -> None:
        np.save(path, self._vectors)

    def vectors(self) -> Vectors:
        return self._vectors
