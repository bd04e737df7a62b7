"""`modeltriage eval outcomes --plans`: learned plans against the baselines, over seeds.

For every seed, a 70/30 split of the training file (or the given test file once): plans
are learned on the train part (:func:`learn_plans`, the margin cross-validated within
it), the test prompts are routed through a real router built from them (nearest
exemplars vote the intent), and each is scored by what its plan really delivered. Beside
it, on the same prompts: every model alone, always-flagship, the per-model kNN estimator
(:mod:`outcome_knn`, its slack swept), random routing at the same flagship share, and
the oracle. The router's own curve sweeps the floor (plans re-chosen per floor; the
voted intents do not change). Embeddings are made once for all seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from modeltriage.core.costs import savings
from modeltriage.core.encoders import Encoder
from modeltriage.core.intents import IntentSet
from modeltriage.errors import InputError
from modeltriage.learn.embedding_cache import CachingEncoder
from modeltriage.learn.outcome_data import OutcomeRow
from modeltriage.learn.outcome_eval import apgr, oracle
from modeltriage.learn.outcome_intents import GroupBy
from modeltriage.learn.outcome_knn import SLACKS, knn_choices, knn_estimates, quality_matrix
from modeltriage.learn.outcome_margin import Z_DEFAULT, learn_margin
from modeltriage.learn.planlearning import decision_plan, learn_plans
from modeltriage.learn.plans import FLAGSHIP_NOW, Plan, Served, choose_from_tables, serve
from modeltriage.learn.splits import seeded_split
from modeltriage.router import Router, route_all

FLOORS: tuple[float, ...] = (0.85, 0.9, 0.93, 0.95, 0.96, 0.97, 0.98, 0.99, 1.0, 1.01, 1.02, 1.04)
SHARES: tuple[float, ...] = (0.95, 0.98, 0.994, 1.0)


@dataclass(frozen=True)
class PolicyPoint:
    name: str
    quality: float  # mean over the test prompts
    cost_usd: float  # total
    quality_share: float  # of always-flagship's
    savings: float  # against always-flagship
    flagship_share: float | None  # share of prompts the flagship answered first
    knob: float | None = None  # the floor (router) or the slack (kNN)


@dataclass(frozen=True)
class SplitResult:
    seed: int | None  # None: a given test file
    train_rows: int
    test_rows: int
    set_aside: int  # test prompts some model has no outcome on (not scored)
    gaps: dict[str, int]  # training prompts each model has no outcome on
    margin: float  # learned, in standard errors
    plans: dict[str, str]
    intent_accuracy: float | None
    router: PolicyPoint  # the plans at the asked floor, through the router
    router_curve: list[PolicyPoint]
    knn_curve: list[PolicyPoint]
    baselines: list[PolicyPoint]  # each model, always-flagship, oracle
    random: list[PolicyPoint]  # at each router point's flagship share
    apgr: dict[str, float]
    savings_at: dict[str, dict[str, float | None]]


@dataclass(frozen=True)
class Comparison:
    flagship: str
    floor: float
    answers: bool
    splits: list[SplitResult]


def point(
    name: str,
    served: Sequence[Served],
    top: Sequence[Served],
    first_flagship: int,
    knob: float | None = None,
) -> PolicyPoint:
    quality = sum(s.quality for s in served)
    cost = sum(s.cost for s in served)
    top_q = sum(s.quality for s in top)
    top_c = sum(s.cost for s in top)
    return PolicyPoint(
        name,
        quality / len(served),
        cost,
        quality / top_q if top_q > 0 else 1.0,
        savings(cost, top_c) if top_c > 0 else 0.0,
        first_flagship / len(served),
        knob,
    )


def plans_point(
    name: str,
    rows: Sequence[OutcomeRow],
    plans: Sequence[Plan],
    flagship: str,
    knob: float | None = None,
) -> PolicyPoint:
    served = [serve(p, r, flagship) for p, r in zip(plans, rows, strict=True)]
    top = [serve(FLAGSHIP_NOW, r, flagship) for r in rows]
    first = sum(p.kind == "flagship" for p in plans)
    return point(name, served, top, first, knob)


def best_savings(curve: Sequence[PolicyPoint]) -> dict[str, float | None]:
    """The most savings among the curve's points at or above each quality share."""
    found: dict[str, float | None] = {}
    for share in SHARES:
        ok = [p.savings for p in curve if p.quality_share >= share - 1e-9]
        found[f"{100 * share:g}%"] = max(ok) if ok else None
    return found


def _knn_curve(
    train: Sequence[OutcomeRow],
    test: Sequence[OutcomeRow],
    encoder: CachingEncoder,
    view: object,
    flagship: str,
) -> list[PolicyPoint]:
    models = sorted({m for r in train for m in r.outcomes})
    spent = {m: np.mean([r.outcomes[m].cost_usd for r in train if m in r.outcomes]) for m in models}
    order = sorted(range(len(models)), key=lambda j: (spent[models[j]], models[j]))

    def vectors(rows: Sequence[OutcomeRow]) -> np.ndarray:
        v = encoder.encode([view(r.text) for r in rows])  # type: ignore[operator]
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        return np.asarray(v / np.where(norms > 0, norms, 1.0))

    estimates = knn_estimates(vectors(train), quality_matrix(train, models), vectors(test))
    curve = []
    for slack in SLACKS:
        picks = knn_choices(estimates, order, slack)
        plans = [
            FLAGSHIP_NOW if models[j] == flagship else Plan("single", models[j]) for j in picks
        ]
        curve.append(plans_point(f"kNN slack {slack:g}", test, plans, flagship, slack))
    return curve


def _baselines(
    test: Sequence[OutcomeRow], flagship: str, good: float
) -> tuple[list[PolicyPoint], PolicyPoint]:
    """Each model alone, always-flagship and the oracle; and the cheapest model alone."""
    models = sorted(test[0].outcomes)
    singles = [
        plans_point(
            m, test, [FLAGSHIP_NOW if m == flagship else Plan("single", m)] * len(test), flagship
        )
        for m in models
    ]
    top = [serve(FLAGSHIP_NOW, r, flagship) for r in test]
    found = [*singles, point("always-flagship", top, top, len(test))]
    picks = [oracle(r, good) for r in test]
    found.append(point("oracle", [Served(q, c, False) for q, c in picks], top, 0))
    return found, min(singles, key=lambda p: (p.cost_usd, p.name))


def _random(
    curve: Sequence[PolicyPoint], singles: Sequence[PolicyPoint], flagship: str
) -> list[PolicyPoint]:
    """Random routing at each curve point's flagship share: the flagship that often, else
    any other model, uniformly (expected values)."""
    top = next(p for p in singles if p.name == flagship)
    others = [p for p in singles if p.name != flagship]
    mean_q = sum(p.quality for p in others) / len(others)
    mean_c = sum(p.cost_usd for p in others) / len(others)
    out = []
    for s in sorted({round(p.flagship_share or 0.0, 6) for p in curve}):
        q = s * top.quality + (1 - s) * mean_q
        c = s * top.cost_usd + (1 - s) * mean_c
        out.append(
            PolicyPoint(
                f"random at {100 * s:.0f}% flagship",
                q,
                c,
                q / top.quality if top.quality > 0 else 1.0,
                savings(c, top.cost_usd) if top.cost_usd > 0 else 0.0,
                s,
            )
        )
    return out


def evaluate_split(
    train: Sequence[OutcomeRow],
    test: Sequence[OutcomeRow],
    tiers: Sequence[tuple[str, str]],
    encoder: CachingEncoder,
    *,
    seed: int | None,
    floor: float,
    candidates: int,
    agree: int = 3,
    margin_z: float = Z_DEFAULT,
    good: float,
    long_text: str,
    group_by: GroupBy,
    clusters: int | None,
) -> SplitResult:
    """One split: learn on ``train``, score every policy on ``test``'s complete rows."""
    flagship = tiers[-1][1]
    learned = learn_plans(
        train,
        tiers,
        encoder,
        floor=floor,
        candidates=candidates,
        agree=agree,
        group_by=group_by,
        clusters=clusters,
        seed=seed or 0,
        long_text=long_text,
        margin_z=margin_z,
    )
    models = sorted({m for r in train for m in r.outcomes})
    complete = [r for r in test if all(m in r.outcomes for m in models)]
    if not complete:
        raise InputError("no test row has an outcome for every model")
    router = Router.in_memory(IntentSet(config=learned.config, intents=learned.intents), encoder)
    decisions = route_all(router, [r.text for r in complete])
    routed = plans_point(
        "router with learned plans",
        complete,
        [decision_plan(d, flagship) for d in decisions],
        flagship,
        floor,
    )
    curve = []
    for f in sorted({*FLOORS, floor}):
        margin = learn_margin(learned.tables, f, seed=seed or 0, z=margin_z).margin
        plans = choose_from_tables(learned.tables, floor=f, margin=margin).plans
        voted = [plans.get(d.intent or "", FLAGSHIP_NOW) for d in decisions]
        curve.append(plans_point(f"router floor {f:g}", complete, voted, flagship, f))
    knn = _knn_curve(train, complete, encoder, learned.config.scoring.view, flagship)
    baselines, cheapest = _baselines(complete, flagship, good)
    top = next(p for p in baselines if p.name == "always-flagship")
    singles = [p for p in baselines if p.name not in ("always-flagship", "oracle")]
    accuracy = None
    if group_by == "task" and all(r.task for r in complete):
        from modeltriage.learn.outcome_intents import intent_name

        hits = sum(
            d.intent == intent_name(r.task) for d, r in zip(decisions, complete, strict=True)
        )
        accuracy = hits / len(complete)

    def gap_area(c: Sequence[PolicyPoint]) -> float:
        pts = [(p.flagship_share or 0.0, p.quality) for p in c]
        return apgr(pts, cheapest.quality, top.quality)

    return SplitResult(
        seed=seed,
        train_rows=learned.rows,
        test_rows=len(complete),
        set_aside=len(test) - len(complete),
        gaps=learned.gaps,
        margin=learned.margin.margin if learned.margin is not None else 0.0,
        plans={g: p.label for g, p in sorted(learned.choice.plans.items())},
        intent_accuracy=accuracy,
        router=routed,
        router_curve=curve,
        knn_curve=knn,
        baselines=baselines,
        random=_random(curve, singles, flagship),
        apgr={"router": gap_area(curve), "kNN": gap_area(knn)},
        savings_at={"router": best_savings(curve), "kNN": best_savings(knn)},
    )


def compare_plans(
    rows: Sequence[OutcomeRow],
    test: Sequence[OutcomeRow] | None,
    tiers: Sequence[tuple[str, str]],
    encoder: Encoder,
    *,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    held_out: float = 0.3,
    floor: float = 0.98,
    candidates: int = 3,
    agree: int = 3,
    margin_z: float = Z_DEFAULT,
    good: float = 0.5,
    long_text: str = "tail",
    group_by: GroupBy = "task",
    clusters: int | None = None,
    progress: bool = True,
) -> Comparison:
    """:func:`evaluate_split` on each seed's split of ``rows`` (or once on ``test``)."""
    if not 0 < held_out < 1:
        raise InputError("--held-out must be between 0 and 1")
    if not seeds and test is None:
        raise InputError("--seeds must be at least 1")
    cached = (
        encoder
        if isinstance(encoder, CachingEncoder)
        else CachingEncoder(encoder, progress=progress)
    )
    runs: list[tuple[int | None, Sequence[OutcomeRow], Sequence[OutcomeRow]]]
    if test is not None:
        runs = [(None, rows, test)]
    else:
        runs = [(s, *seeded_split(rows, held_out, s)) for s in seeds]
    splits = [
        evaluate_split(
            train,
            held,
            tiers,
            cached,
            seed=seed,
            floor=floor,
            candidates=candidates,
            agree=agree,
            margin_z=margin_z,
            good=good,
            long_text=long_text,
            group_by=group_by,
            clusters=clusters,
        )
        for seed, train, held in runs
    ]
    answers = any(r.responses for r in rows)
    return Comparison(tiers[-1][1], floor, answers, splits)
