"""Choose how each intent's requests are served, from labelled outcomes with answers.

For every group of prompts (an intent: a task or a cluster) the options are: the flagship
now; one cheap model alone; or a cascade, where a cheap model answers, a second cheap
model answers too, and the flagship is called when the two disagree. Each option's
quality and cost on the group's prompts are what really happened (RouterBench-style
outcomes with each model's response), and :func:`choose_plans` picks one option per
group: the cheapest combination whose quality over all groups stays at or above a floor
of the flagship's. Pure: no I/O, no encoder.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from modeltriage.core.costs import savings
from modeltriage.followup.answers import answers_agree
from modeltriage.learn.outcome_data import OutcomeRow

PlanKind = Literal["flagship", "single", "cascade"]


@dataclass(frozen=True)
class Plan:
    kind: PlanKind
    first: str | None = None
    second: str | None = None

    @property
    def label(self) -> str:
        if self.kind == "flagship":
            return "flagship now"
        if self.kind == "single":
            return f"{self.first} alone"
        return f"{self.first}, checked by {self.second}"


FLAGSHIP_NOW = Plan("flagship")


@dataclass(frozen=True)
class Served:
    """One prompt under one plan: the answer's quality, what was paid, and whether the
    flagship had to answer after a cheap model (escalated)."""

    quality: float
    cost: float
    escalated: bool


def serve(plan: Plan, row: OutcomeRow, flagship: str) -> Served:
    """What ``plan`` would have delivered on ``row``. A cascade escalates when either
    answer is missing or the two disagree (:func:`answers_agree`)."""
    top = row.outcomes[flagship]
    if plan.kind == "flagship":
        return Served(top.quality, top.cost_usd, False)
    assert plan.first is not None
    first = row.outcomes[plan.first]
    if plan.kind == "single":
        return Served(first.quality, first.cost_usd, False)
    assert plan.second is not None
    second = row.outcomes[plan.second]
    paid = first.cost_usd + second.cost_usd
    a, b = row.responses.get(plan.first), row.responses.get(plan.second)
    if a is not None and b is not None and answers_agree(a, b, None):
        return Served(first.quality, paid, False)
    return Served(top.quality, paid + top.cost_usd, True)


def candidate_plans(
    rows: Sequence[OutcomeRow], cheap: Sequence[str], flagship: str, candidates: int = 3
) -> list[Plan]:
    """Flagship now; each of the ``candidates`` cheap models most often right on ``rows``,
    alone; and each ordered pair of them as a cascade, the cheaper answering first."""
    usable = [m for m in cheap if all(m in r.outcomes for r in rows)]

    def accuracy(model: str) -> float:
        return sum(r.outcomes[model].quality for r in rows)

    def spend(model: str) -> float:
        return sum(r.outcomes[model].cost_usd for r in rows)

    best = sorted(usable, key=lambda m: (-accuracy(m), spend(m), m))[:candidates]
    plans = [FLAGSHIP_NOW, *(Plan("single", m) for m in best)]
    for a, b in itertools.combinations(sorted(best, key=lambda m: (spend(m), m)), 2):
        plans.append(Plan("cascade", a, b))
    return plans


@dataclass(frozen=True)
class GroupOption:
    plan: Plan
    quality: float  # summed over the group's rows
    cost: float
    escalated: int


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


def group_options(
    rows: Sequence[OutcomeRow], cheap: Sequence[str], flagship: str, candidates: int = 3
) -> list[GroupOption]:
    options = []
    for plan in candidate_plans(rows, cheap, flagship, candidates):
        served = [serve(plan, r, flagship) for r in rows]
        options.append(
            GroupOption(
                plan,
                sum(s.quality for s in served),
                sum(s.cost for s in served),
                sum(s.escalated for s in served),
            )
        )
    return options


def choose_plans(
    groups: Mapping[str, Sequence[OutcomeRow]],
    cheap: Sequence[str],
    flagship: str,
    *,
    floor: float = 0.98,
    candidates: int = 3,
) -> PlanChoice:
    """The cheapest plan per group whose quality over all rows reaches ``floor`` x the
    flagship's. Searched by a Lagrangian sweep: for each price of quality, every group
    takes the option with the best quality-for-cost trade, and the cheapest feasible
    combination wins (all-flagship is always feasible)."""
    if not 0 < floor <= 1.5:
        raise ValueError(f"floor must be a share of the flagship's quality, got {floor}")
    rows = [r for members in groups.values() for r in members]
    if not rows:
        raise ValueError("no rows to choose plans from")
    if any(flagship not in r.outcomes for r in rows):
        raise ValueError(f"every row needs an outcome for the flagship {flagship}")
    options = {
        g: group_options(members, cheap, flagship, candidates) for g, members in groups.items()
    }
    top_quality = sum(r.outcomes[flagship].quality for r in rows)
    top_cost = sum(r.outcomes[flagship].cost_usd for r in rows)
    target = floor * top_quality
    # Prices of quality are relative to the flagship's cost per right answer.
    unit = top_cost / max(top_quality, 1e-9)
    best = _cheaper_moves(_lagrangian_sweep(options, target, unit), options, target)
    return PlanChoice(
        plans={g: o.plan for g, o in best.items()},
        quality=sum(o.quality for o in best.values()) / len(rows),
        cost=sum(o.cost for o in best.values()),
        flagship_quality=top_quality / len(rows),
        flagship_cost=top_cost,
        rows=len(rows),
    )


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
            g: max(opts, key=lambda o: (price * o.quality - o.cost, -o.cost))
            for g, opts in options.items()
        }
        quality = sum(o.quality for o in pick.values())
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
        quality = sum(o.quality for o in best.values())
        moves = [
            (best[g].cost - o.cost, g, o)
            for g, opts in options.items()
            for o in opts
            if o.cost < best[g].cost and quality - best[g].quality + o.quality >= target - 1e-9
        ]
        if not moves:
            return best
        _, group, option = max(moves, key=lambda m: (m[0], m[1]))
        best[group] = option
