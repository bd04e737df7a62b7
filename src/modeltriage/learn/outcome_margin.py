"""The safety margin of a plan choice, learned by cross-validation within the training rows.

Plans chosen on a group's few prompts overfit: a cheap model that happened to match the
flagship on 40 prompts is often a little worse on the next 40. The choice therefore
trusts an option's quality less ``margin`` standard errors (:func:`table_options`). Which
margin is learned here: for each candidate, choose on k-1 folds of every group, score the
choice on the fold left out (by the prompts' own group, what the plans would deliver had
the router voted the right intent), and keep the smallest margin whose pooled held-out
quality reaches the floor. Pure: arrays in, numbers out.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from modeltriage.core.costs import savings
from modeltriage.learn.plans import GroupTable, check_floor, choose_from_tables

MARGINS: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)


@dataclass(frozen=True)
class MarginScore:
    margin: float
    quality_share: float  # pooled over the held-out folds, against the flagship's
    savings: float


@dataclass(frozen=True)
class MarginChoice:
    margin: float
    scores: list[MarginScore]
    folds: int


def fold_indices(sizes: Mapping[str, int], folds: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Per fold, per group, the indices of that group's rows held out: each group's rows
    are shuffled with ``seed`` and dealt round-robin, so every group is in every fold."""
    rng = random.Random(seed)
    dealt: list[dict[str, np.ndarray]] = [{} for _ in range(folds)]
    for group in sorted(sizes):
        order = list(range(sizes[group]))
        rng.shuffle(order)
        for f in range(folds):
            dealt[f][group] = np.array(sorted(order[f::folds]), dtype=int)
    return dealt


def held_out_score(
    tables: Mapping[str, GroupTable],
    margin: float,
    floor: float,
    folds: Sequence[Mapping[str, np.ndarray]],
) -> MarginScore:
    """Pooled quality share and savings of choices made without each fold, on it."""
    quality = cost = top_quality = top_cost = 0.0
    for held in folds:
        kept = {g: np.setdiff1d(np.arange(t.quality.shape[1]), held[g]) for g, t in tables.items()}
        usable = {g: t for g, t in tables.items() if len(kept[g]) > 0}
        if not usable:
            continue
        choice = choose_from_tables(usable, floor=floor, margin=margin, rows=kept)
        for g, plan in choice.plans.items():
            t, idx = tables[g], held[g]
            p = t.plans.index(plan)
            q = t.quality[p, idx]
            known = ~np.isnan(q)  # a prompt the chosen model has no outcome on: left out
            quality += float(q[known].sum())
            cost += float(t.cost[p, idx][known].sum())
            top_quality += float(t.quality[0, idx][known].sum())
            top_cost += float(t.cost[0, idx][known].sum())
    share = quality / top_quality if top_quality > 0 else 1.0
    return MarginScore(margin, share, savings(cost, top_cost) if top_cost > 0 else 0.0)


def learn_margin(
    tables: Mapping[str, GroupTable],
    floor: float,
    *,
    folds: int = 5,
    seed: int = 0,
    margins: Sequence[float] = MARGINS,
) -> MarginChoice:
    """The margin with the most held-out savings among those whose held-out quality
    reaches ``floor``; the one with the best quality when none does."""
    check_floor(floor)
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    if not margins:
        raise ValueError("no margins to choose from")
    split = fold_indices({g: t.quality.shape[1] for g, t in tables.items()}, folds, seed)
    scores = [held_out_score(tables, m, floor, split) for m in margins]
    ok = [s for s in scores if s.quality_share >= floor - 1e-9]
    if ok:
        best = max(ok, key=lambda s: (s.savings, -s.margin))
    else:
        best = max(scores, key=lambda s: (s.quality_share, -s.margin))
    return MarginChoice(best.margin, scores, folds)
