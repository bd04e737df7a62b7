"""Leave-one-out over an index's own exemplars, vectorised: each exemplar routed against
all the others, as the policy would score it.

One batched search of ``top_k + 1`` neighbours over the stored vectors (never
re-embedded; for an exact index, :mod:`.all_pairs` computes each pair once) finds every
exemplar's neighbours; dropping the exemplar itself leaves the
``top_k`` a real request at its place would see. The intent scores are
:func:`modeltriage.core.scoring.score_intents` computed for all rows at once with numpy
(a table test holds the two equal): calling the policy per exemplar would take tens of
seconds on 15,000 exemplars.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from modeltriage.core.config import Aggregation
from modeltriage.core.encoders import Vectors
from modeltriage.core.scoring import VOTE_TEMPERATURE
from modeltriage.core.vector_index import VectorIndex
from modeltriage.learn.all_pairs import self_search

Ints = NDArray[np.int64]
Floats = NDArray[np.float64]


@dataclass(frozen=True)
class LeaveOneOut:
    """Per exemplar (row of the index): its neighbours among the others, nearest first,
    and the intent the policy's scoring would pick from them.

    Intents are numbered by position in ``intents``; ``runner_up`` is -1 when only one
    intent was retrieved (then ``margin`` is against an absent intent's score, as in the
    policy)."""

    intents: tuple[str, ...]
    labels: Ints  # (n,) each exemplar's own intent
    ids: Ints  # (n, k) neighbour rows
    sims: NDArray[np.float32]  # (n, k)
    predicted: Ints  # (n,)
    runner_up: Ints  # (n,)
    best_score: Floats  # (n,)
    margin: Floats  # (n,)

    @property
    def correct(self) -> NDArray[np.bool_]:
        return np.asarray(self.predicted == self.labels, dtype=np.bool_)

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.correct)) if len(self.labels) else 1.0

    @property
    def top_similarity(self) -> Floats:
        if self.sims.shape[1] == 0:
            return np.full(len(self.labels), -1.0)
        return self.sims[:, 0].astype(np.float64)


def label_rows(row_intents: Sequence[str]) -> tuple[tuple[str, ...], Ints]:
    """Intent names sorted (the policy breaks score ties by name) and each row's number."""
    names = tuple(sorted(set(row_intents)))
    number = {name: i for i, name in enumerate(names)}
    return names, np.array([number[i] for i in row_intents], dtype=np.int64)


def neighbours_without_self(
    index: VectorIndex, vectors: Vectors, k: int, exact: bool = False
) -> tuple[NDArray[np.float32], Ints]:
    """The ``k`` nearest other rows of every stored vector, from one search of ``k + 1``:
    of ``index``, or (``exact``, for an exact index) :func:`.all_pairs.self_search`,
    which gives the same neighbours in half the time."""
    n = len(vectors)
    k = max(0, min(k, n - 1))
    if k == 0:
        return np.zeros((n, 0), dtype=np.float32), np.zeros((n, 0), dtype=np.int64)
    sims, ids = self_search(vectors, k + 1) if exact else index.search(vectors, k + 1)
    is_self = ids == np.arange(n)[:, None]
    # With several identical vectors the row itself may rank past k + 1: drop the last.
    missing = ~is_self.any(axis=1)
    is_self[missing, -1] = True
    keep = ~is_self
    return sims[keep].reshape(n, k), ids[keep].reshape(n, k)


def within_intent_rank(labels: Ints) -> Ints:
    """For each column, how many earlier columns of the row share its label (0 = the
    intent's nearest neighbour, 1 = its second)."""
    n, k = labels.shape
    order = np.argsort(labels, axis=1, kind="stable")
    ordered = np.take_along_axis(labels, order, axis=1)
    starts = np.ones((n, k), dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    positions = np.broadcast_to(np.arange(k), (n, k))
    run_start = np.maximum.accumulate(np.where(starts, positions, 0), axis=1)
    rank = np.empty((n, k), dtype=np.int64)
    np.put_along_axis(rank, order, positions - run_start, axis=1)
    return rank


def intent_scores(
    neighbour_labels: Ints, sims: NDArray[np.float32], intents: int, aggregation: Aggregation
) -> Floats:
    """(n, intents) scores as :func:`~modeltriage.core.scoring.score_intents` gives them;
    -inf for an intent not among a row's neighbours. ``sims`` sorted nearest first."""
    n, k = sims.shape
    s = sims.astype(np.float64)
    rows = np.broadcast_to(np.arange(n)[:, None], (n, k))
    flat = (rows * intents + neighbour_labels).ravel()
    present = np.bincount(flat, minlength=n * intents).reshape(n, intents) > 0
    if aggregation == "vote":
        weights = np.exp((s - s[:, :1]) / VOTE_TEMPERATURE)
        summed = np.bincount(flat, weights=weights.ravel(), minlength=n * intents)
        totals = summed.reshape(n, intents)
        scores: Floats = totals / totals.sum(axis=1, keepdims=True)
    else:
        rank = within_intent_rank(neighbour_labels)
        top1 = np.full((n, intents), -np.inf)
        first = rank == 0
        top1[rows[first], neighbour_labels[first]] = s[first]
        if aggregation == "max":
            scores = top1
        else:  # mean_top2: an intent's missing second is the k-th similarity
            top2 = np.broadcast_to(s[:, -1:], (n, intents)).copy()
            second = rank == 1
            top2[rows[second], neighbour_labels[second]] = s[second]
            scores = (top1 + top2) / 2
    return np.where(present, scores, -np.inf)


def leave_one_out(
    index: VectorIndex,
    vectors: Vectors,
    row_intents: Sequence[str],
    top_k: int,
    aggregation: Aggregation,
    exact: bool = False,
) -> LeaveOneOut:
    """Route every stored exemplar against the others (see the module docstring);
    ``exact``: ``index`` is an exact one, searched without it (same neighbours)."""
    intents, labels = label_rows(row_intents)
    sims, ids = neighbours_without_self(index, vectors, top_k, exact)
    n, m = len(labels), len(intents)
    if sims.shape[1] == 0:
        none = np.full(n, -1, dtype=np.int64)
        zeros = np.zeros(n)
        return LeaveOneOut(intents, labels, ids, sims, none, none, zeros, zeros)
    neighbour_labels = labels[ids]
    scores = intent_scores(neighbour_labels, sims, m, aggregation)
    rows = np.arange(n)
    predicted = np.argmax(scores, axis=1)  # the first maximum: ties go to the name first
    best = scores[rows, predicted]
    rest = scores.copy()
    rest[rows, predicted] = -np.inf
    runner_up = np.argmax(rest, axis=1)
    second = rest[rows, runner_up]
    has_runner_up = np.isfinite(second)
    absent = np.zeros(n) if aggregation == "vote" else sims[:, -1].astype(np.float64)
    margin = best - np.where(has_runner_up, second, absent)
    return LeaveOneOut(
        intents=intents,
        labels=labels,
        ids=ids,
        sims=sims,
        predicted=predicted.astype(np.int64),
        runner_up=np.where(has_runner_up, runner_up, -1).astype(np.int64),
        best_score=best,
        margin=margin,
    )
