"""The per-model kNN estimator: a baseline for `eval outcomes`.

Each model's quality on a prompt is estimated as the similarity-weighted mean of its
outcomes on the ``k`` nearest training prompts (those it has an outcome on: a gap is
never read as 0), and the prompt goes to the cheapest model whose estimate is within a
``slack`` of the best one. Sweeping the slack draws its cost/quality curve. It routes per
prompt with no intents at all, which is what a learned intent router has to beat.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modeltriage.learn.outcome_data import OutcomeRow

SLACKS: tuple[float, ...] = (
    0.0,
    0.01,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    1.0,
)


def quality_matrix(rows: Sequence[OutcomeRow], models: Sequence[str]) -> np.ndarray:
    """(rows, models) of quality, NaN where a model has no outcome."""
    out = np.full((len(rows), len(models)), np.nan)
    for i, row in enumerate(rows):
        for j, m in enumerate(models):
            o = row.outcomes.get(m)
            if o is not None:
                out[i, j] = o.quality
    return out


def knn_estimates(
    train_vectors: np.ndarray, train_quality: np.ndarray, test_vectors: np.ndarray, k: int = 20
) -> np.ndarray:
    """(test, models): each model's similarity-weighted mean quality over the ``k``
    training prompts nearest each test prompt (vectors unit-normed: dot = cosine).
    Weights are similarities floored at a small positive value; a model with no outcome
    on any of the neighbours gets NaN."""
    if len(train_vectors) == 0:
        raise ValueError("no training prompts")
    k = min(k, len(train_vectors))
    sims = test_vectors @ train_vectors.T
    nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    weights = np.maximum(np.take_along_axis(sims, nearest, axis=1), 1e-6)  # (test, k)
    q = train_quality[nearest]  # (test, k, models)
    known = ~np.isnan(q)
    w = weights[:, :, None] * known
    total = w.sum(axis=1)
    summed = (np.where(known, q, 0.0) * weights[:, :, None]).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, summed / np.where(total > 0, total, 1.0), np.nan)


def knn_choices(estimates: np.ndarray, cost_order: Sequence[int], slack: float) -> list[int]:
    """Per prompt, the model (column) cheapest by ``cost_order`` (columns, cheapest first)
    whose estimate is within ``slack`` of the prompt's best estimate."""
    choices = []
    for est in estimates:
        best = np.nanmax(est) if not np.all(np.isnan(est)) else np.nan
        pick = cost_order[-1]
        if not np.isnan(best):
            pick = next(j for j in cost_order if not np.isnan(est[j]) and est[j] >= best - slack)
        choices.append(int(pick))
    return choices
