"""Learn intents that carry serving plans from outcomes, and score them on
held-out prompts: `modeltriage learn --plans` and `modeltriage eval outcomes --plans`.

The plans themselves are chosen by :func:`modeltriage.learn.plans.choose_plans` (pure); this
module turns them into intents (one model is an intent's ``model``; a cascade plan is
its ``model`` plus its ``cascade``) and routes held-out prompts through a real router to
see what the plans deliver when the intent is not known but voted by the nearest
exemplars.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from modeltriage.core.config import RouterConfig
from modeltriage.core.costs import savings
from modeltriage.core.decision import Decision
from modeltriage.core.encoders import Encoder
from modeltriage.core.intents import Exemplar, Intent, IntentCascade, IntentSet
from modeltriage.errors import InputError
from modeltriage.learn.outcome_data import OutcomeRow
from modeltriage.learn.outcome_intents import (
    GroupBy,
    group_names,
    intent_name,
    learned_config,
    needs_clustering,
)
from modeltriage.learn.outcome_margin import MarginChoice, learn_margin
from modeltriage.learn.plans import (
    FLAGSHIP_NOW,
    GroupTable,
    Plan,
    PlanChoice,
    Served,
    choose_from_tables,
    group_tables,
    serve,
)
from modeltriage.router import Router, route_all


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
    ``cascade.second_opinion`` checks, the flagship on disagreement)."""
    intents = []
    for name in sorted(groups):
        # Intents refuse repeated exemplars, case aside: the first spelling stays.
        firsts: dict[str, str] = {}
        for row in groups[name]:
            text = row.text.strip()
            if text:
                firsts.setdefault(text.casefold(), text)
        exemplars = [Exemplar(text=text) for text in firsts.values()]
        plan = plans[name]
        fields: dict[str, object] = {"difficulty": "hard"}
        if plan.kind != "flagship":
            fields = {"difficulty": "easy", "model": plan.first}
        if plan.kind == "cascade":
            fields["cascade"] = IntentCascade(second_opinion=plan.second, escalate_to=flagship)
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


def grouped(rows: Sequence[OutcomeRow], names: Sequence[str] | None) -> dict[str, list[OutcomeRow]]:
    groups: dict[str, list[OutcomeRow]] = {}
    for i, row in enumerate(rows):
        key = row.task if names is None else names[i]
        groups.setdefault(intent_name(key), []).append(row)
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
    tables: dict[str, GroupTable]  # every group's candidate plans served on its rows


def learn_plans(
    rows: Sequence[OutcomeRow],
    tiers: Sequence[tuple[str, str]],
    encoder: Encoder | None,
    *,
    floor: float = 0.98,
    candidates: int = 3,
    group_by: GroupBy = "task",
    clusters: int | None = None,
    seed: int = 0,
    long_text: str = "tail",
    margin: float | None = None,
    folds: int = 5,
    names: Sequence[str] | None = None,
) -> LearnedPlans:
    """Group ``rows`` (by task, or clusters: needs ``encoder``; or ``names``, one per row),
    choose a plan per group at ``floor`` of the flagship's quality, and make the intents
    and router config. Without `responses` only plans that compare no answers are
    considered. ``margin`` (standard errors) is learned by ``folds``-fold
    cross-validation when None. ``long_text``: the scoring view, for clustering and the
    config alike."""
    flagship = tiers[-1][1]
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
    try:
        tables = group_tables(groups, cheap, flagship, candidates=candidates, answers=answers)
        learned = None
        if margin is None:
            learned = learn_margin(tables, floor, folds=folds, seed=seed)
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
    )


def decision_plan(decision: Decision, flagship: str) -> Plan:
    """The plan a decision asks the caller to follow."""
    plan = decision.cascade
    if plan is not None and plan.second_opinion is not None:
        return Plan("cascade", decision.model, plan.second_opinion)
    if decision.model == flagship:
        return FLAGSHIP_NOW
    return Plan("single", decision.model)


@dataclass(frozen=True)
class PlanScore:
    name: str
    quality: float  # mean
    cost_usd: float  # total
    quality_share: float
    savings: float
    escalated: float  # share of rows
    precision: float | None  # escalated rows whose first answer was wrong
    recall: float | None  # rows whose first answer was wrong that escalated


@dataclass(frozen=True)
class PlansReport:
    flagship: str
    floor: float
    plans: dict[str, str]
    train_rows: int
    test_rows: int
    train_quality_share: float
    train_savings: float
    intent_accuracy: float | None
    scores: list[PlanScore]


def score(
    name: str, rows: Sequence[OutcomeRow], plans: Sequence[Plan], flagship: str, good: float
) -> PlanScore:
    served: list[Served] = [serve(p, r, flagship) for p, r in zip(plans, rows, strict=True)]
    quality = sum(s.quality for s in served)
    cost = sum(s.cost for s in served)
    top_q = sum(r.outcomes[flagship].quality for r in rows)
    top_c = sum(r.outcomes[flagship].cost_usd for r in rows)
    checked = [
        (s.escalated, r.outcomes[p.first].quality < good)
        for s, r, p in zip(served, rows, plans, strict=True)
        if p.kind == "cascade" and p.first is not None
    ]
    escalated_wrong = sum(e and w for e, w in checked)
    escalations = sum(e for e, _ in checked)
    wrong = sum(w for _, w in checked)
    return PlanScore(
        name=name,
        quality=quality / len(rows),
        cost_usd=cost,
        quality_share=quality / top_q if top_q > 0 else 1.0,
        savings=savings(cost, top_c),
        escalated=sum(s.escalated for s in served) / len(rows),
        precision=escalated_wrong / escalations if escalations else None,
        recall=escalated_wrong / wrong if wrong else None,
    )


def evaluate_plans(
    train: Sequence[OutcomeRow],
    test: Sequence[OutcomeRow],
    tiers: Sequence[tuple[str, str]],
    encoder: Encoder,
    *,
    floor: float = 0.98,
    candidates: int = 3,
    good: float = 0.5,
    long_text: str = "tail",
    group_by: GroupBy = "task",
    clusters: int | None = None,
    seed: int = 0,
) -> PlansReport:
    """Choose plans on ``train``; route ``test`` through a router built from them and
    score what the decisions' plans deliver, beside always-flagship and the same plans
    applied with each test prompt's true task (when grouping by task)."""
    learned = learn_plans(
        train,
        tiers,
        encoder,
        floor=floor,
        candidates=candidates,
        group_by=group_by,
        clusters=clusters,
        seed=seed,
        long_text=long_text,
    )
    flagship = tiers[-1][1]
    needed = {flagship, *(m.name for m in learned.config.models)}
    usable = [r for r in test if needed <= set(r.outcomes)]
    if not usable:
        raise InputError("no test row has outcomes for every model the plans use")
    router = Router.in_memory(IntentSet(config=learned.config, intents=learned.intents), encoder)
    decisions = route_all(router, [r.text for r in usable])
    routed = [decision_plan(d, flagship) for d in decisions]
    scores = [
        score("always-flagship", usable, [FLAGSHIP_NOW] * len(usable), flagship, good),
        score("router with learned plans", usable, routed, flagship, good),
    ]
    accuracy = None
    by_name = {intent_name(g): p for g, p in learned.choice.plans.items()}
    if group_by == "task" and all(r.task for r in usable):
        truth = [by_name.get(intent_name(r.task), FLAGSHIP_NOW) for r in usable]
        scores.append(score("the same plans, true task", usable, truth, flagship, good))
        accuracy = sum(
            d.intent == intent_name(r.task) for d, r in zip(decisions, usable, strict=True)
        ) / len(usable)
    return PlansReport(
        flagship=flagship,
        floor=floor,
        plans={g: p.label for g, p in sorted(by_name.items())},
        train_rows=learned.rows,
        test_rows=len(usable),
        train_quality_share=learned.choice.quality_share,
        train_savings=learned.choice.savings,
        intent_accuracy=accuracy,
        scores=scores,
    )


def format_plans_report(report: PlansReport) -> str:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    lines = [
        f"plans chosen on {report.train_rows} prompts for >= {report.floor:g} of "
        f"{report.flagship}'s quality: {pct(report.train_quality_share)} at "
        f"{pct(report.train_savings)} savings there",
        *(f"  {group}: {label}" for group, label in report.plans.items()),
        "",
        f"held out: {report.test_rows} prompts"
        + (
            ""
            if report.intent_accuracy is None
            else f"; the voted intent is the true task for {pct(report.intent_accuracy)}"
        ),
        f"{'policy':<30} {'quality':>8} {'% flagship':>10} {'cost $':>9} {'savings':>8} "
        f"{'escalated':>9} {'precision':>9} {'recall':>7}",
    ]
    for s in report.scores:
        lines.append(
            f"{s.name:<30} {s.quality:8.3f} {pct(s.quality_share):>10} {s.cost_usd:9.3f} "
            f"{pct(s.savings):>8} {pct(s.escalated):>9} {pct(s.precision):>9} "
            f"{pct(s.recall):>7}"
        )
    lines.append(
        "precision: escalated answers that were wrong; recall: wrong first answers escalated "
        "(cascade plans only)"
    )
    return "\n".join(lines)
