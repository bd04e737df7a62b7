"""Choose the no-match threshold ``thresholds.min_similarity`` on held-out labelled rows.

Below ``min_similarity`` the router answers ``no_match``, which an evaluation reads as a
prediction of "out of scope". The threshold is chosen on training rows held out from the
exemplars, never on the test set (``eval intents --tune-min-similarity``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from modeltriage.core.encoders import Encoder
from modeltriage.core.intents import IntentSet
from modeltriage.learn.datasets import LabelledText
from modeltriage.learn.intent_metrics import (
    Label,
    oos_precision,
    oos_recall,
    overall_accuracy,
    same_length,
)
from modeltriage.router import Router, route_all

# Share of each intent's training rows held out to choose min_similarity on.
HELD_OUT_SHARE = 0.2
# Candidate thresholds: cosine similarity in steps of 0.005.
MIN_SIMILARITY_GRID: tuple[float, ...] = tuple(round(i * 0.005, 3) for i in range(201))


def apply_min_similarity(
    predicted: Sequence[Label], confidences: Sequence[float], min_similarity: float
) -> list[Label]:
    """Predictions with a no-match threshold: below it the router predicts out of scope.
    The threshold is checked before anything else in ``decide``, so it changes nothing
    else."""
    same_length(predicted, confidences)
    return [None if c < min_similarity else p for p, c in zip(predicted, confidences, strict=True)]


def choose_min_similarity(
    gold: Sequence[Label],
    predicted: Sequence[Label],
    confidences: Sequence[float],
    candidates: Sequence[float] = MIN_SIMILARITY_GRID,
) -> float:
    """The threshold that maximises overall accuracy (out of scope as a class), given
    predictions made without one; among tied candidates, the middle one, so the choice
    does not sit on the edge of a plateau."""
    if same_length(gold, predicted, confidences) == 0 or not candidates:
        raise ValueError("need at least one row and one candidate min_similarity")
    is_oos = np.array([g is None for g in gold])
    correct = np.array([g == p for g, p in zip(gold, predicted, strict=True)])
    grid = np.asarray(candidates, dtype=np.float64)
    rejected = np.asarray(confidences, dtype=np.float64)[None, :] < grid[:, None]
    accuracy = np.where(rejected, is_oos[None, :], correct[None, :]).mean(axis=1)
    tied = np.flatnonzero(accuracy >= accuracy.max() - 1e-12)
    return float(grid[tied[len(tied) // 2]])


@dataclass(frozen=True)
class MinSimilarityTuning:
    """How min_similarity was chosen: on held-out training rows, never the test set."""

    min_similarity: float
    held_out_rows: int
    held_out_in_scope: int
    held_out_out_of_scope: int
    tuning_exemplars: int
    overall_accuracy: float | None
    oos_recall: float | None
    oos_precision: float | None


def exemplar_texts(intent_set: IntentSet) -> list[str]:
    """Every exemplar text of ``intent_set``, in order."""
    return [e.text for intent in intent_set.intents for e in intent.exemplars]


def tune_min_similarity(
    intent_set: IntentSet, held: Sequence[LabelledText], encoder: Encoder
) -> MinSimilarityTuning:
    """Route ``held`` with a router over ``intent_set`` (built without a threshold) and
    choose the threshold that scores them best."""
    router = Router.in_memory(intent_set, encoder)
    decisions = route_all(router, [r.text for r in held], explain=True)
    gold = [r.intent for r in held]
    predicted = [d.intent for d in decisions]
    confidences = [d.confidence for d in decisions]
    chosen = choose_min_similarity(gold, predicted, confidences)
    applied = apply_min_similarity(predicted, confidences, chosen)
    oos = sum(g is None for g in gold)
    return MinSimilarityTuning(
        min_similarity=chosen,
        held_out_rows=len(held),
        held_out_in_scope=len(held) - oos,
        held_out_out_of_scope=oos,
        tuning_exemplars=len(exemplar_texts(intent_set)),
        overall_accuracy=overall_accuracy(gold, applied),
        oos_recall=oos_recall(gold, applied),
        oos_precision=oos_precision(gold, applied),
    )
