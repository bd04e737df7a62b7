"""Learn intents that carry serving plans from outcomes: `modeltriage learn --plans`
(and the learning half of `modeltriage eval outcomes --plans`, :mod:`outcome_compare`).

The plans themselves are chosen by :func:`modeltriage.learn.plans.choose_from_tables`
(pure); this module groups the rows into intents, chooses each intent's plan on the
prompts the router would send it (:mod:`outcome_votes`), and turns the plans into intents
(one model is an intent's ``model``; a cascade plan is its ``model`` plus its
``cascade``), and reads the plan back out of a routed decision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from modeltriage.core.config import RouterConfig
from modeltriage.core.decision import Decision
from modeltriage.core.encoders import Encoder
from modeltriage.core.intents import Exemplar, Intent, IntentCascade
from modeltriage.errors import InputError
from modeltriage.learn.outcome_data import OutcomeRow
from modeltriage.learn.outcome_intents import (
    GroupBy,
    group_names,
    intent_name,
    learned_config,
    needs_clustering,
)
from modeltriage.learn.outcome_margin import Z_DEFAULT, MarginChoice, learn_margin
from modeltriage.learn.outcome_votes import voted_intents
from modeltriage.learn.plans import (
    FLAGSHIP_NOW,
    GroupTable,
    Plan,
    PlanChoice,
    choose_from_tables,
    group_tables,
)


def plan_models(rows: Sequence[OutcomeRow], flagship: str) -> list[str]:
    """The cheap models a plan may use: every model other than the flagship with an
    outcome on some row (each is judged where it has one)."""
    return sorted({m for r in rows for m in r.outcomes} - {flagship})


def outcome_gaps(rows: Sequence[OutcomeRow], models: Sequence[str]) -> dict[str, int]:
    """How many of ``rows`` each model has no outcome on (only models with gaps)."""
    gaps = {m: sum(m not in r.outcomes for r in rows) for m in models}
    return {m: n for m, n in sorted(gaps.items()) if n}


def plan_tiers(rows: Sequence[OutcomeRow], flagship: str) -> list[tuple[str, str]]:
    """Tiers for a router whose intents name their models: the flagship, and the model
    cheapest on average as the tier of intents that name none."""
    if not any(flagship in r.outcomes for r in rows):
        raise InputError(f"--flagship {flagship}: no row has an outcome for it")
    spent: dict[str, list[float]] = {}
    for r in rows:
        for m, o in r.outcomes.items():
            spent.setdefault(m, []).append(o.cost_usd)
    others = [m for m in spent if m != flagship]
    if not others:
        raise InputError(f"the rows have outcomes for {flagship} only: nothing to choose from")
    cheapest = min(others, key=lambda m: (sum(spent[m]) / len(spent[m]), m))
    return [("cheap", cheapest), ("flagship", flagship)]


def plan_intents(
    groups: Mapping[str, Sequence[OutcomeRow]], plans: Mapping[str, Plan], flagship: str
) -> tuple[Intent, ...]:
    """One intent per group, its prompts as exemplars, served as its plan says: the
    flagship (difficulty hard), one model (``model``), or a cascade (``model`` answers,
    ``cascade.second_opinion`` and any ``cascade.also_agree`` check, the flagship unless
    all agree)."""
    intents = []
    for name in sorted(groups):
        # Intents refuse repeated exemplars, case aside: the first spelling stays.
        firsts: dict[str, str] = {}
        for row in groups[name]:
            text = row.text.strip()
            if text:
                firsts.setdefault(text.casefold(), text)
        exemplars = [Exemplar(text=text) for text in firsts.values()]
        plan = plans.get(name, FLAGSHIP_NOW)  # an intent no training prompt is voted into
        fields: dict[str, object] = {"difficulty": "hard"}
        if plan.kind != "flagship":
            fields = {"difficulty": "easy", "model": plan.first}
        if plan.kind == "cascade":
            fields["cascade"] = IntentCascade(
                second_opinion=plan.second, escalate_to=flagship, also_agree=list(plan.more)
            )
        intents.append(
            Intent.model_validate(
                {
                    "name": intent_name(name),
                    "description": f"learned plan: {plan.label} ({len(exemplars)} prompts)",
                    "exemplars": exemplars,
                    **fields,
                }
            )
        )
    return tuple(intents)


def row_intents(rows: Sequence[OutcomeRow], names: Sequence[str] | None) -> list[str]:
    """Each row's intent: its task's name, or its given group name."""
    return [intent_name(row.task if names is None else names[i]) for i, row in enumerate(rows)]


def grouped(rows: Sequence[OutcomeRow], names: Sequence[str] | None) -> dict[str, list[OutcomeRow]]:
    groups: dict[str, list[OutcomeRow]] = {}
    for row, name in zip(rows, row_intents(rows, names), strict=True):
        groups.setdefault(name, []).append(row)
    return groups


@dataclass(frozen=True)
class LearnedPlans:
    choice: PlanChoice
    intents: tuple[Intent, ...]
    config: RouterConfig
    rows: int
    skipped: int  # rows without the flagship's outcome
    margin: MarginChoice | None  # None when given rather than learned
    gaps: dict[str, int]  # model -> usable rows it has no outcome on
    answers: bool  # whether plans that compare answers were considered
    tables: dict[str, GroupTable]  # every intent's candidate plans served on its rows
    # Share of training prompts voted into their own intent (leave-one-out); None when
    # plans were chosen on each intent's own prompts (no encoder, or route_aware off).
    vote_accuracy: float | None = None


def learn_plans(
    rows: Sequence[OutcomeRow],
    tiers: Sequence[tuple[str, str]],
    encoder: Encoder | None,
    *,
    floor: float = 0.98,
    candidates: int = 3,
    agree: int = 3,
    group_by: GroupBy = "task",
    clusters: int | None = None,
    seed: int = 0,
    long_text: str = "tail",
    margin: float | None = None,
    folds: int = 5,
    margin_z: float = Z_DEFAULT,
    names: Sequence[str] | None = None,
    route_aware: bool = True,
) -> LearnedPlans:
    """Group ``rows`` (by task, or clusters: needs ``encoder``; or ``names``, one per row)
    into intents, choose a plan per intent at ``floor`` of the flagship's quality, and make
    the intents and router config. With an ``encoder`` and ``route_aware``, each intent's
    plan is chosen on the training prompts the router would send to it (each voted from
    the others, :mod:`outcome_votes`), not on its own task's prompts. Without
    `responses` only plans that compare no answers are considered. ``margin`` (standard
    errors) is learned by ``folds``-fold cross-validation when None, the held-out quality
    less ``margin_z`` standard errors reaching the floor. ``long_text``: the
    scoring view, for clustering and the config alike."""
    flagship = tiers[-1][1]
    if not 1 <= agree <= 8:
        raise InputError(f"--agree must be from 1 to 8 models, got {agree}")
    if not 1 <= candidates <= 20:
        raise InputError(f"--candidates must be from 1 to 20 models, got {candidates}")
    usable = [r for r in rows if flagship in r.outcomes]
    if not usable:
        raise InputError(f"no row has an outcome for the flagship {flagship}")
    if names is not None:
        if len(names) != len(rows):
            raise ValueError("need one group name per row")
        names = [n for n, r in zip(names, rows, strict=True) if flagship in r.outcomes]
    cheap = plan_models(usable, flagship)
    answers = any(r.responses for r in usable)
    scoring = learned_config(usable, tiers).scoring.model_copy(update={"long_text": long_text})
    if names is None and needs_clustering(usable, group_by):
        if encoder is None:
            raise InputError("clustering needs an encoder")
        names = group_names(usable, encoder, scoring, group_by, clusters, seed)
    groups = grouped(usable, names)
    served, vote_accuracy = groups, None
    if encoder is not None and route_aware and len(groups) > 1:
        own = row_intents(usable, names)
        voted = voted_intents(usable, own, encoder, scoring)
        vote_accuracy = sum(a == b for a, b in zip(own, voted, strict=True)) / len(own)
        served = grouped(usable, voted)
    try:
        tables = group_tables(
            served, cheap, flagship, candidates=candidates, answers=answers, agree=agree
        )
        learned = None
        if margin is None:
            learned = learn_margin(tables, floor, folds=folds, seed=seed, z=margin_z)
        used_margin = learned.margin if learned is not None else margin
        assert used_margin is not None
        choice = choose_from_tables(tables, floor=floor, margin=used_margin)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    used = [m for p in choice.plans.values() for m in p.models]
    config = learned_config(usable, tiers, extra_models=used).model_copy(
        update={"scoring": scoring}
    )
    intents = plan_intents(groups, choice.plans, flagship)
    return LearnedPlans(
        choice,
        intents,
        config,
        len(usable),
        len(rows) - len(usable),
        learned,
        outcome_gaps(usable, cheap),
        answers,
        tables,
        vote_accuracy,
    )


def decision_plan(decision: Decision, flagship: str) -> Plan:
    """The plan a decision asks the caller to follow."""
    plan = decision.cascade
    if plan is not None and plan.second_opinion is not None:
        return Plan("cascade", decision.model, plan.second_opinion, tuple(plan.also_agree))
    if decision.model == flagship:
        return FLAGSHIP_NOW
    return Plan("single", decision.model)
