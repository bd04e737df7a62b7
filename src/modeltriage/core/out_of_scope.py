"""The out-of-scope floor, calibrated from the exemplars at build time.

One global ``min_similarity`` is a guess about the similarity scale, and the adapter moves
that scale. Most users have no out-of-scope examples to tune it on, but they do have
exemplars: a share of each intent's exemplars is held out, the rest are indexed (through an
adapter trained on them alone, when the adapter is on, so the held-out vectors are as
unseen as a request is), and each held-out exemplar's top similarity is measured. The
floor is the ``reject_share`` quantile of those similarities: it turns away about that
share of in-scope requests, and everything that resembles the exemplars less.

Why held out and not leave-one-out on the final index: the adapter is trained on the
exemplars, which pulls them closer together than any unseen request; their leave-one-out
similarities sit well above a request's (on CLINC150, 10 per intent: 5th percentile 0.585
against 0.508 for val requests), so a floor from them rejects far more than it should.
Held-out exemplars are routed against a slightly sparser index (one share fewer), which
errs the other way, by little.

Why one floor and not one per intent: per-intent quantiles of 10 or so held-out
similarities are noise; measured on CLINC150 they lost to the global floor at every share
(docs/benchmarks.md, "Out-of-scope detection").

With ``score: similarity+mahalanobis`` (the default) the floor is put on another score,
:mod:`.oos_score`'s sum of the top similarity and a relative Mahalanobis distance, each
standardised on the same held-out exemplars; the Gaussians of that distance are fitted
on the rest for calibrating, and on all exemplars for serving.

Pure numpy and deterministic in its inputs and the seed. The map is fitted by a callable
the caller gives (the index passes the adapter's training), so this module needs no
knowledge of how it is trained.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from modeltriage.core.adapter import Matrix, TrainSettings, checked_fit, normalise_rows
from modeltriage.core.config import OutOfScopeSettings
from modeltriage.core.oos_score import (
    COMBINED,
    SIMILARITY,
    Gaussians,
    combined,
    fit_gaussians,
    scale_of,
)

# A map fitted on (vectors, integer labels): returns the matrix, or None for raw cosines.
FitMap = Callable[[Matrix, NDArray[np.int64]], Matrix | None]

_CHUNK = 2048  # held-out rows per similarity block: bounded memory on 15,000 exemplars


@dataclass(frozen=True)
class FloorCalibration:
    """The calibrated floor and what it was measured on (recorded in the manifest)."""

    floor: float
    reject_share: float
    held_out: int  # exemplars held out and routed against the others
    median: float  # their median score (top similarity, or the combined score)
    score: str = SIMILARITY  # what the floor is on (oos_score.SIMILARITY or COMBINED)
    # The combined score's Gaussians, fitted on all exemplars, with the held-out scale.
    gaussians: Gaussians | None = None


def held_out_rows(labels: NDArray[np.int64], share: float, seed: int) -> NDArray[np.bool_]:
    """A stratified, seeded hold-out: ``share`` of each intent's exemplars (at least one),
    never its last one, so every intent stays in the index. An intent with a single
    exemplar holds nothing out."""
    rng = np.random.default_rng(seed)
    held = np.zeros(labels.shape[0], dtype=bool)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        if rows.size < 2:
            continue
        take = min(rows.size - 1, max(1, round(rows.size * share)))
        held[rng.permutation(rows)[:take]] = True
    return held


def top_similarities(keys: Matrix, queries: Matrix) -> NDArray[np.float32]:
    """Each query's highest cosine to ``keys`` (unit rows both)."""
    tops = [
        (queries[start : start + _CHUNK] @ keys.T).max(axis=1)
        for start in range(0, queries.shape[0], _CHUNK)
    ]
    return np.concatenate(tops).astype(np.float32) if tops else np.zeros(0, np.float32)


def floor_at(similarities: NDArray[np.floating], reject_share: float) -> float:
    """The ``reject_share`` quantile (the lower one: never above an observed value, so
    ``reject_share`` 0 rejects none of them)."""
    if similarities.size == 0:
        raise ValueError("no held-out similarities to calibrate a floor on")
    return float(np.quantile(similarities, reject_share, method="lower"))


def calibrate_floor(
    vectors: Matrix,
    labels: NDArray[np.int64],
    fit: FitMap,
    *,
    reject_share: float,
    hold_out: float,
    seed: int,
    score: str = SIMILARITY,
) -> FloorCalibration | None:
    """Hold out ``hold_out`` of each intent's exemplars, fit the map on the rest (``fit``),
    and take the ``reject_share`` quantile of the held-out exemplars' top similarities
    to the rest (with ``score`` COMBINED: of their combined scores, the Gaussians fitted
    on the rest's raw vectors). None when nothing can be held out (every intent has one
    exemplar) or the rest has fewer than 2 intents for ``fit`` to learn from. The
    combined score falls back to the similarity when its Gaussians or its scale cannot
    be estimated (no intent with 2 exemplars left, fewer than ``oos_score.MIN_HELD_OUT``
    held out): the calibration's ``score`` says which."""
    held = held_out_rows(labels, hold_out, seed)
    kept = ~held
    if not held.any() or np.unique(labels[kept]).size < 2:
        return None
    keys, queries = normalise_rows(vectors[kept]), normalise_rows(vectors[held])
    raw_queries = queries
    _, remapped = np.unique(labels[kept], return_inverse=True)
    matrix = fit(keys, remapped.astype(np.int64))
    gaussians = None if score != COMBINED else fit_gaussians(keys, labels[kept])
    if matrix is not None:
        keys, queries = normalise_rows(keys @ matrix), normalise_rows(queries @ matrix)
    tops = top_similarities(keys, queries)
    if gaussians is not None:
        distances = gaussians.distances(raw_queries)
        scale = scale_of(tops, distances)
        # The serving Gaussians, on all exemplars: fitted only once the scale is known.
        final = None if scale is None else fit_gaussians(vectors, labels)
        if scale is not None and final is not None:
            values = combined(tops, distances, scale)
            return FloorCalibration(
                floor=round(floor_at(values, reject_share), 6),
                reject_share=reject_share,
                held_out=int(held.sum()),
                median=round(float(np.median(values)), 6),
                score=COMBINED,
                gaussians=final.with_scale(scale),
            )
    return FloorCalibration(
        floor=round(floor_at(tops, reject_share), 6),
        reject_share=reject_share,
        held_out=int(held.sum()),
        median=round(float(np.median(tops)), 6),
    )


def calibrate_index_floor(
    vectors: Matrix,
    intents: Sequence[str],
    settings: OutOfScopeSettings,
    adapter: TrainSettings | None,
) -> FloorCalibration | None:
    """The build's calibration: ``vectors`` are the raw exemplar vectors, ``adapter`` the
    training settings of the index's adapter with its weight decay already chosen (None:
    the index has no adapter, so raw cosines are calibrated)."""
    if not settings.calibrate:
        return None
    _, labels = np.unique(np.asarray(intents), return_inverse=True)

    def fit(keys: Matrix, kept: NDArray[np.int64]) -> Matrix | None:
        return None if adapter is None else checked_fit(keys, kept, adapter).matrix

    return calibrate_floor(
        normalise_rows(vectors),
        labels.astype(np.int64),
        fit,
        reject_share=settings.reject_share,
        hold_out=settings.hold_out,
        seed=settings.seed,
        score=settings.score,
    )


def explain_floor(similarity: float, calibration_floor: float, reject_share: float) -> str:
    """Why a request under the calibrated floor matched nothing."""
    return (
        f"top similarity {similarity:.3f} < the out-of-scope floor {calibration_floor:.3f} "
        f"calibrated on held-out exemplars (it turns away {reject_share:.0%} of them; "
        "out_of_scope.reject_share)"
    )
