"""Every stored vector's exact nearest neighbours among the stored vectors, in half the
work of searching the index with all of them.

Searching a flat index with its own 15,000 vectors computes every similarity twice
(``x_i . x_j`` and ``x_j . x_i``). Here each pair of row blocks is multiplied once and
the product serves both blocks' rows. Instead of a heap per row, each row gets a floor:
the ``k``-th largest similarity within its own block, which can only be below its true
``k``-th (rows are sorted by intent, so the block holds the row's own intent and the
floor is tight). Only similarities at or above a row's floor are kept as candidates, a
few dozen a row, and the exact top ``k`` is picked from them at the end.

The result is that of an exact search (:class:`modeltriage.core.vector_index.NumpyIndex`):
nearest first, equal similarities in row order. `modeltriage lint` uses it when the
index is exact (flat); an approximate index is searched as it serves.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from modeltriage.core.encoders import Vectors

BLOCK = 2048  # 16 MB of float32 similarities per block pair


def _kth_largest(block: NDArray[np.float32], k: int) -> NDArray[np.float32]:
    if block.shape[1] < k:  # too narrow to bound anything: keep every candidate
        return np.full(block.shape[0], -np.inf, dtype=np.float32)
    return np.asarray(np.partition(block, -k, axis=1)[:, -k], dtype=np.float32)


class _Candidates:
    """(row, column, similarity) triples that may be among a row's ``k`` nearest."""

    def __init__(self) -> None:
        self.rows: list[NDArray[np.int64]] = []
        self.cols: list[NDArray[np.int64]] = []
        self.sims: list[NDArray[np.float32]] = []

    def add(
        self, rows: NDArray[np.int64], cols: NDArray[np.int64], sims: NDArray[np.float32]
    ) -> None:
        self.rows.append(rows)
        self.cols.append(cols)
        self.sims.append(sims)

    def add_block(
        self,
        sims: NDArray[np.float32],
        i0: int,
        j0: int,
        row_floor: NDArray[np.float32],
        col_floor: NDArray[np.float32] | None,
    ) -> None:
        """Block ``sims`` of rows ``i0..`` against rows ``j0..``: for the first rows, and
        (``col_floor`` given) transposed for the second."""
        mask = sims >= row_floor[:, None]
        if col_floor is not None:
            mask |= sims >= col_floor[None, :]
        # flatnonzero on the flat mask: np.nonzero on 2-d is over 10x slower here.
        flat = np.flatnonzero(mask)
        a, b = np.divmod(flat, sims.shape[1])
        s = sims.reshape(-1)[flat]
        keep = s >= row_floor[a]
        self.add(a[keep] + i0, b[keep] + j0, s[keep])
        if col_floor is not None:
            keep = s >= col_floor[b]
            self.add(b[keep] + j0, a[keep] + i0, s[keep])

    def top(self, n: int, k: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        rows = np.concatenate(self.rows)
        cols = np.concatenate(self.cols)
        sims = np.concatenate(self.sims)
        order = np.lexsort((cols, -sims, rows))  # by row, nearest first, ties by row order
        first = np.searchsorted(rows[order], np.arange(n))
        take = order[(first[:, None] + np.arange(k)).reshape(-1)]
        return sims[take].reshape(n, k), cols[take].reshape(n, k)


def self_search(
    vectors: Vectors, k: int, block: int = BLOCK
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """What ``index.search(vectors, k)`` gives on an exact index of ``vectors`` (each row
    itself included, usually first): (n, k) similarities and rows, nearest first."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(x)
    k = min(k, n)
    if k <= 0:
        return np.zeros((n, 0), dtype=np.float32), np.zeros((n, 0), dtype=np.int64)
    starts = range(0, n, block)
    floor = np.empty(n, dtype=np.float32)
    found = _Candidates()
    for i0 in starts:
        rows = x[i0 : i0 + block]
        sims = rows @ rows.T
        floor[i0 : i0 + len(rows)] = _kth_largest(sims, k)
        found.add_block(sims, i0, i0, floor[i0 : i0 + len(rows)], None)
    for i0 in starts:
        rows = x[i0 : i0 + block]
        for j0 in range(i0 + block, n, block):
            others = x[j0 : j0 + block]
            sims = rows @ others.T
            found.add_block(sims, i0, j0, floor[i0 : i0 + len(rows)], floor[j0 : j0 + len(others)])
    return found.top(n, k)
