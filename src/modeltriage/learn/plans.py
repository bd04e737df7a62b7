"""Choose how each intent's requests are served, from labelled outcomes.

For every group of prompts (an intent: a task or a cluster) the options are: the flagship
now; any other model alone; and, when the outcomes carry each model's answer, a cascade,
where a cheap model answers, one or more other cheap models answer too, and the flagship
is called unless they all agree (docs/cascade.md: three models that must all agree kept
99.2% of GPT-4's quality on RouterBench where a pair kept 98%). Each option's quality and
cost on the group's prompts are what really happened, and :func:`choose_plans` picks one
option per group: the cheapest combination whose quality over all groups stays at or
above a floor of the flagship's.

Small groups overfit: an option is judged by its quality less ``margin`` standard errors
of its per-prompt difference from the flagship (``margin`` is learned by cross-validation
in :mod:`modeltriage.learn.outcome_margin`). A model with no outcome on some prompts is
judged on the prompts where it has one, never as quality 0. Pure: no I/O, no encoder.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from modeltriage.core.costs import savings
from modeltriage.followup.answers import answers_agree
from modeltriage.learn.outcome_data import OutcomeRow

PlanKind = Literal["flagship", "single", "cascade"]


@dataclass(frozen=True)
class Plan:
    kind: PlanKind
    first: str | None = None
    second: str | None = None
    more: tuple[str, ...] = ()  # further opinions a cascade's answers must all agree with

    @property
    def label(self) -> str:
        if self.kind == "flagship":
            return "flagship now"
        if self.kind == "single":
            return f"{self.first} alone"
        if self.more:
            others = ", ".join((str(self.second), *self.more))
            return f"{self.first}, checked by {others} (all must agree)"
        return f"{self.first}, checked by {self.second}"

    @property
    def needs_answers(self) -> bool:
        """Whether serving the plan compares answers (so choosing it needs `responses`)."""
        return self.kind == "cascade"

    @property
    def models(self) -> tuple[str, ...]:
        return (*(m for m in (self.first, self.second) if m is not None), *self.more)


FLAGSHIP_NOW = Plan("flagship")


@dataclass(frozen=True)
class Served:
    """One prompt under one plan: the answer's quality, what was paid, and whether the
    flagship had to answer after a cheap model (escalated)."""

    quality: float
    cost: float
    escalated: bool


def can_serve(plan: Plan, row: OutcomeRow, flagship: str) -> bool:
    """Whether ``row`` has an outcome for every model ``plan`` may call."""
    return flagship in row.outcomes and all(m in row.outcomes for m in plan.models)


def serve(plan: Plan, row: OutcomeRow, flagship: str) -> Served:
    """What ``plan`` would have delivered on ``row`` (which must have its models'
    outcomes: :func:`can_serve`). A cascade escalates when an answer is missing or one of
    the opinions disagrees with the first answer (:func:`answers_agree`)."""
    top = row.outcomes[flagship]
    if plan.kind == "flagship":
        return Served(top.quality, top.cost_usd, False)
    assert plan.first is not None
    first = row.outcomes[plan.first]
    if plan.kind == "single":
        return Served(first.quality, first.cost_usd, False)
    assert plan.second is not None
    opinions = (plan.second, *plan.more)
    paid = first.cost_usd + sum(row.outcomes[m].cost_usd for m in opinions)
    a = row.responses.get(plan.first)
    others = [row.responses.get(m) for m in opinions]
    if a is not None and all(b is not None and answers_agree(a, b, None) for b in others):
        return Served(first.quality, paid, False)
    return Served(top.quality, paid + top.cost_usd, True)


MIN_KNOWN = 3  # a model judged on fewer of a group's prompts is not offered for it


def candidate_plans(
    rows: Sequence[OutcomeRow],
    cheap: Sequence[str],
    flagship: str,
    candidates: int = 3,
    answers: bool = True,
    agree: int = 3,
) -> list[Plan]:
    """Flagship now; every cheap model alone; and, with ``answers``, every set of 2 to
    ``agree`` of the ``candidates`` cheap models most often right on ``rows`` as a cascade
    whose answers must all agree, the cheapest answering first. A model is judged on the
    rows it has an outcome on."""

    def known(model: str) -> list[OutcomeRow]:
        return [r for r in rows if model in r.outcomes]

    def accuracy(model: str) -> float:
        seen = known(model)
        return sum(r.outcomes[model].quality for r in seen) / len(seen)

    def spend(model: str) -> float:
        seen = known(model)
        return sum(r.outcomes[model].cost_usd for r in seen) / len(seen)

    usable = [m for m in cheap if m != flagship and len(known(m)) >= min(MIN_KNOWN, len(rows))]
    ranked = sorted(usable, key=lambda m: (-accuracy(m), spend(m), m))
    plans = [
        FLAGSHIP_NOW,
        *(Plan("single", m) for m in sorted(usable, key=lambda m: (spend(m), m))),
    ]
    if answers:
        best = sorted(ranked[:candidates], key=lambda m: (spend(m), m))
        for size in range(2, agree + 1):
            for first, second, *more in itertools.combinations(best, size):
                plans.append(Plan("cascade", first, second, tuple(more)))
    return plans


@dataclass(frozen=True)
class GroupTable:
    """Every candidate plan served on every prompt of a group, computed once so choices
    on subsets of the prompts (cross-validation folds) are array sums. ``quality`` is NaN
    where a plan's model has no outcome; plan 0 is the flagship, known on every row."""

    plans: list[Plan]
    quality: np.ndarray  # (plans, rows)
    cost: np.ndarray
    escalated: np.ndarray


def group_table(
    rows: Sequence[OutcomeRow],
    cheap: Sequence[str],
    flagship: str,
    candidates: int = 3,
    answers: bool = True,
    agree: int = 3,
) -> GroupTable:
    plans = candidate_plans(rows, cheap, flagship, candidates, answers, agree)
    shape = (len(plans), len(rows))
    quality = np.full(shape, np.nan)
    cost = np.full(shape, np.nan)
    escalated = np.zeros(shape, dtype=bool)
    for p, plan in enumerate(plans):
        for i, row in enumerate(rows):
            if can_serve(plan, row, flagship):
                served = serve(plan, row, flagship)
                quality[p, i], cost[p, i], escalated[p, i] = (
                    served.quality,
                    served.cost,
                    served.escalated,
                )
    return GroupTable(plans, quality, cost, escalated)


@dataclass(frozen=True)
class GroupOption:
    plan: Plan
    quality: float  # estimated, summed over the group's rows
    cost: float
    escalated: float
    guarded: float  # quality less the safety margin: what the choice trusts


def table_options(
    table: GroupTable, rows: np.ndarray | None = None, margin: float = 0.0
) -> list[GroupOption]:
    """Each plan's estimated quality and cost over the ``rows`` (indices; all when None),
    scaled from the rows it is known on, with its guarded quality: ``margin`` standard
    errors of its per-row difference from the flagship below the estimate."""
    idx = np.arange(table.quality.shape[1]) if rows is None else rows
    n = len(idx)
    top = table.quality[0, idx]
    options = []
    for p, plan in enumerate(table.plans):
        q = table.quality[p, idx]
        known = ~np.isnan(q)
        k = int(known.sum())
        if k == 0 or (p > 0 and k < min(MIN_KNOWN, n)):
            continue
        scale = n / k
        quality = float(q[known].sum()) * scale
        penalty = 0.0
        if p > 0 and margin > 0 and k > 1:
            diff = q[known] - top[known]
            penalty = margin * float(np.std(diff, ddof=1)) * math.sqrt(k) * scale
        options.append(
            GroupOption(
                plan,
                quality,
                float(table.cost[p, idx][known].sum()) * scale,
                float(table.escalated[p, idx][known].sum()) * scale,
                quality - penalty,
            )
        )
    return options


@dataclass(frozen=True)
class PlanChoice:
    """The chosen plan per group, and what it delivers on the rows it was chosen on."""

    plans: dict[str, Plan]
    quality: float  # mean over all rows
    cost: float  # total
    flagship_quality: float
    flagship_cost: float
    rows: int

    @property
    def quality_share(self) -> float:
        return self.quality / self.flagship_quality if self.flagship_quality > 0 else 1.0

    @property
    def savings(self) -> float:
        return savings(self.cost, self.flagship_cost)


def check_floor(floor: float) -> None:
    if not (math.isfinite(floor) and 0 < floor <= 1.5):
        raise ValueError(f"floor must be a share of the flagship's quality, got {floor}")


def group_tables(
    groups: Mapping[str, Sequence[OutcomeRow]],
    cheap: Sequence[str],
    flagship: str,
    *,
    candidates: int = 3,
    answers: bool = True,
    agree: int = 3,
) -> dict[str, GroupTable]:
    """:func:`group_table` per group; every row must have the flagship's outcome."""
    rows = [r for members in groups.values() for r in members]
    if not rows:
        raise ValueError("no rows to choose plans from")
    if any(flagship not in r.outcomes for r in rows):
        raise ValueError(f"every row needs an outcome for the flagship {flagship}")
    return {
        g: group_table(members, cheap, flagship, candidates, answers, agree)
        for g, members in groups.items()
        if members
    }


def choose_from_tables(
    tables: Mapping[str, GroupTable],
    *,
    floor: float = 0.98,
    margin: float = 0.0,
    rows: Mapping[str, np.ndarray] | None = None,
) -> PlanChoice:
    """The cheapest plan per group whose guarded quality over all rows reaches ``floor``
    x the flagship's, on ``rows`` of each group (all when None). Searched by a Lagrangian
    sweep: for each price of quality, every group takes the option with the best
    quality-for-cost trade, and the cheapest feasible combination wins (all-flagship is
    always feasible)."""
    check_floor(floor)
    options = {
        g: table_options(t, None if rows is None else rows[g], margin) for g, t in tables.items()
    }
    options = {g: o for g, o in options.items() if o}
    if not options:
        raise ValueError("no rows to choose plans from")
    top_quality = sum(o[0].quality for o in options.values())
    top_cost = sum(o[0].cost for o in options.values())
    count = sum(
        t.quality.shape[1] if rows is None else len(rows[g])
        for g, t in tables.items()
        if g in options
    )
    target = floor * top_quality
    # Prices of quality are relative to the flagship's cost per right answer.
    unit = top_cost / max(top_quality, 1e-9)
    best = _cheaper_moves(_lagrangian_sweep(options, target, unit), options, target)
    return PlanChoice(
        plans={g: o.plan for g, o in best.items()},
        quality=sum(o.quality for o in best.values()) / count,
        cost=sum(o.cost for o in best.values()),
        flagship_quality=top_quality / count,
        flagship_cost=top_cost,
        rows=count,
    )


def choose_plans(
    groups: Mapping[str, Sequence[OutcomeRow]],
    cheap: Sequence[str],
    flagship: str,
    *,
    floor: float = 0.98,
    candidates: int = 3,
    margin: float = 0.0,
    answers: bool = True,
    agree: int = 3,
) -> PlanChoice:
    """:func:`choose_from_tables` over ``groups``' rows: plans with every cheap model
    alone, and with ``answers`` cascades of up to ``agree`` of the ``candidates`` most
    often right."""
    check_floor(floor)
    tables = group_tables(
        groups, cheap, flagship, candidates=candidates, answers=answers, agree=agree
    )
    return choose_from_tables(tables, floor=floor, margin=margin)


def _lagrangian_sweep(
    options: Mapping[str, Sequence[GroupOption]], target: float, unit: float
) -> dict[str, GroupOption]:
    """For prices of quality from "almost free" to "anything for quality" (``unit`` x
    1.25^-40..40), every group takes its best quality-for-cost trade; the cheapest
    combination reaching ``target`` wins, all-flagship (each group's first option) if
    none does."""
    best: dict[str, GroupOption] = {g: opts[0] for g, opts in options.items()}
    best_cost = sum(o.cost for o in best.values())
    for step in range(-40, 41):
        price = unit * 1.25**step
        pick = {
            g: max(opts, key=lambda o: (price * o.guarded - o.cost, -o.cost))
            for g, opts in options.items()
        }
        quality = sum(o.guarded for o in pick.values())
        cost = sum(o.cost for o in pick.values())
        if quality >= target - 1e-9 and cost < best_cost:
            best, best_cost = pick, cost
    return best


def _cheaper_moves(
    best: dict[str, GroupOption], options: Mapping[str, Sequence[GroupOption]], target: float
) -> dict[str, GroupOption]:
    """The sweep only visits trade-off points; a cheaper option for one group that keeps
    the total at ``target`` is taken too, the largest saving first, until none is left."""
    best = dict(best)
    while True:
        quality = sum(o.guarded for o in best.values())
        moves = [
            (best[g].cost - o.cost, g, o)
            for g, opts in options.items()
            for o in opts
            if o.cost < best[g].cost and quality - best[g].guarded + o.guarded >= target - 1e-9
        ]
        if not moves:
            return best
        _, group, option = max(moves, key=lambda m: (m[0], m[1]))
        best[group] = option
