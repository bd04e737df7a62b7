"""Scoring the neighbours: each intent's score under an aggregation, and the difficulty vote.

Pure functions of the retrieved exemplars, so they can be table-tested.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from modeltriage.core.config import DIFFICULTIES, Aggregation, Difficulty
from modeltriage.core.decision import Neighbour

# Temperature of the similarity-weighted vote: cosine gaps between intents are a few
# hundredths, so a small temperature keeps the nearest exemplars dominant.
VOTE_TEMPERATURE = 0.05


@dataclass(frozen=True)
class IntentScore:
    intent: str
    score: float


def score_intents(neighbours: Sequence[Neighbour], aggregation: Aggregation) -> list[IntentScore]:
    """Score each intent present among ``neighbours``, best first (ties by name)."""
    by_intent: dict[str, list[float]] = {}
    for n in neighbours:
        by_intent.setdefault(n.intent, []).append(n.similarity)
    if not by_intent:
        return []
    kth_similarity = min(n.similarity for n in neighbours)
    scores: dict[str, float] = {}
    if aggregation == "max":
        scores = {intent: max(sims) for intent, sims in by_intent.items()}
    elif aggregation == "mean_top2":
        # An intent with one neighbour in the top k has its second below the k-th
        # similarity; the k-th stands in for it, an upper bound.
        for intent, sims in by_intent.items():
            top = sorted(sims, reverse=True)[:2]
            scores[intent] = (top[0] + (top[1] if len(top) > 1 else kth_similarity)) / 2
    elif aggregation == "vote":
        best = max(n.similarity for n in neighbours)
        weights = {
            intent: sum(math.exp((s - best) / VOTE_TEMPERATURE) for s in sims)
            for intent, sims in by_intent.items()
        }
        total = sum(weights.values())
        scores = {intent: w / total for intent, w in weights.items()}
    else:  # pragma: no cover - pydantic restricts the literal
        raise ValueError(f"unknown aggregation {aggregation!r}")
    return sorted(
        (IntentScore(i, s) for i, s in scores.items()), key=lambda x: (-x.score, x.intent)
    )


def intent_margin(
    ranked: Sequence[IntentScore], neighbours: Sequence[Neighbour], aggregation: Aggregation
) -> float:
    """The best intent's lead over the runner-up (or, with one intent retrieved, over the
    absent stand-in), exactly as the policy compares it with the thresholds."""
    second = ranked[1].score if len(ranked) > 1 else absent_intent_score(neighbours, aggregation)
    return ranked[0].score - second


def absent_intent_score(neighbours: Sequence[Neighbour], aggregation: Aggregation) -> float:
    """The highest score an intent absent from the neighbours could have (the k-th
    similarity, or no vote): the runner-up's stand-in when only one intent was retrieved,
    so the margin is a lower bound rather than undefined."""
    if aggregation == "vote":
        return 0.0
    return min(n.similarity for n in neighbours)


def difficulty_shares(neighbours: Sequence[Neighbour]) -> dict[Difficulty, float]:
    """Share of the vote per difficulty, weighted like the intent vote so the nearest
    exemplars dominate: one close "easy" override outweighs many distant "hard" ones."""
    if not neighbours:
        raise ValueError("cannot vote a difficulty without neighbours")
    weights = dict.fromkeys(DIFFICULTIES, 0.0)
    best = max(n.similarity for n in neighbours)
    for n in neighbours:
        weights[n.difficulty] += math.exp((n.similarity - best) / VOTE_TEMPERATURE)
    total = sum(weights.values())
    return {d: w / total for d, w in weights.items()}


def vote_difficulty(neighbours: Sequence[Neighbour], confidence: float | None = None) -> Difficulty:
    """The voted difficulty. Without ``confidence``: the most voted, a tie going to the
    harder. With it: the easiest difficulty whose cumulative share (easy, then easy and
    moderate) reaches ``confidence`` -- raising it sends doubtful requests up a tier."""
    shares = difficulty_shares(neighbours)
    if confidence is None:
        return max(DIFFICULTIES, key=lambda d: (shares[d], DIFFICULTIES.index(d)))
    cumulative = 0.0
    for difficulty in DIFFICULTIES:
        cumulative += shares[difficulty]
        # A hair of tolerance so that confidence 1.0 is reachable despite rounding.
        if cumulative >= confidence - 1e-9:
            return difficulty
    return DIFFICULTIES[-1]
