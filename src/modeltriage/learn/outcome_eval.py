"""Scoring a router on labelled outcomes: `modeltriage eval outcomes`.

Learn intents from the training rows, route the test rows, sweep difficulty_confidence,
and score every choice by the chosen model's real quality and cost, beside baselines
(each model alone, always-flagship, always-cheapest, the oracle, random routing at the
same flagship share) and RouteLLM's gap-recovered metrics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from modeltriage.core.encoders import Encoder
from modeltriage.core.intents import IntentSet
from modeltriage.errors import InputError
from modeltriage.learn.outcome_data import OutcomeRow
from modeltriage.learn.outcome_intents import GroupBy, group_names, learn_intents, learned_config
from modeltriage.learn.tuning import Case, Point, QualityModel, sweep
from modeltriage.router import Router, route_all


def oracle(row: OutcomeRow, good: float) -> tuple[float, float]:
    """Quality and cost of the cheapest model that answered well (else the best one)."""
    right = [o for o in row.outcomes.values() if o.quality >= good]
    if right:
        best = min(right, key=lambda o: o.cost_usd)
    else:
        best = max(row.outcomes.values(), key=lambda o: (o.quality, -o.cost_usd))
    return best.quality, best.cost_usd


def apgr(points: Sequence[tuple[float, float]], weak: float, strong: float) -> float:
    """RouteLLM's average performance gap recovered: the area under quality-gap
    recovered against the share of calls to the strong model, from (0, weak) to
    (1, strong), over the upper envelope of the router's points."""
    if math.isclose(strong, weak):
        return float("nan")
    pts = sorted([(0.0, weak), *points, (1.0, strong)])
    envelope: list[tuple[float, float]] = []
    for share, quality in pts:
        if envelope and quality <= envelope[-1][1]:
            continue
        envelope.append((share, quality))
    if envelope[-1][0] < 1.0:
        envelope.append((1.0, envelope[-1][1]))
    area = 0.0
    for (x0, y0), (x1, y1) in pairwise(envelope):
        area += (x1 - x0) * ((y0 - weak) + (y1 - weak)) / 2
    return area / (strong - weak)


def calls_for_gap(
    points: Sequence[tuple[float, float]], weak: float, strong: float, share: float
) -> float | None:
    """Least share of strong-model calls among points recovering ``share`` of the gap."""
    if math.isclose(strong, weak):
        return None
    eligible = [s for s, q in points if (q - weak) / (strong - weak) >= share]
    return min(eligible) if eligible else None


@dataclass(frozen=True)
class Baseline:
    name: str
    quality: float
    cost_usd: float
    flagship_share: float | None  # None for the oracle, which picks from every model


@dataclass(frozen=True)
class OutcomesReport:
    test_rows: int
    skipped_rows: int
    flagship: str
    tiers: list[tuple[str, str]]
    long_text: str
    baselines: list[Baseline]
    curve: list[Point]
    savings_at: dict[str, float | None]
    apgr: float
    calls_for_50: float | None
    calls_for_80: float | None


CONFIDENCE_GRID: tuple[float | None, ...] = (
    None,
    *(round(0.05 * i, 2) for i in range(1, 21)),
)


def outcome_cases(router: Router, rows: Sequence[OutcomeRow]) -> list[Case]:
    """Route every row once (neighbours kept) and attach its real qualities and costs."""
    decisions = route_all(router, [row.text for row in rows], explain=True)
    return [
        Case(
            neighbours=tuple(decision.neighbours),
            input_tokens=decision.input_tokens,
            measured={m: o.quality for m, o in row.outcomes.items()},
            costs={m: o.cost_usd for m, o in row.outcomes.items()},
        )
        for row, decision in zip(rows, decisions, strict=True)
    ]


def _mean_baseline(name: str, rows: Sequence[OutcomeRow], model: str, share: float) -> Baseline:
    return Baseline(
        name,
        sum(r.outcomes[model].quality for r in rows) / len(rows),
        sum(r.outcomes[model].cost_usd for r in rows),
        share,
    )


def baselines(
    rows: Sequence[OutcomeRow],
    tiers: Sequence[tuple[str, str]],
    curve: Sequence[Point],
    good: float,
) -> list[Baseline]:
    """Every model with an outcome on every row alone, always-flagship, always-cheapest,
    the oracle, and random routing at each flagship share the router's sweep reached;
    one baseline per name, the first kept."""
    flagship, cheapest = tiers[-1][1], tiers[0][1]

    def single(model: str) -> Baseline:
        return _mean_baseline(model, rows, model, 1.0 if model == flagship else 0.0)

    everywhere = sorted(set.intersection(*(set(r.outcomes) for r in rows)))
    found = [single(m) for m in everywhere]
    top, low = single(flagship), single(cheapest)
    found += [
        Baseline("always-flagship", top.quality, top.cost_usd, 1.0),
        Baseline("always-cheapest", low.quality, low.cost_usd, 0.0),
    ]
    oracle_rows = [oracle(r, good) for r in rows]
    found.append(
        Baseline(
            "oracle",
            sum(q for q, _ in oracle_rows) / len(rows),
            sum(c for _, c in oracle_rows),
            None,
        )
    )
    for point in curve:
        s = point.flagship_share
        found.append(
            Baseline(
                f"random at {100 * s:.0f}% flagship",
                s * top.quality + (1 - s) * low.quality,
                s * top.cost_usd + (1 - s) * low.cost_usd,
                s,
            )
        )
    return _unique(found)


def _unique(found: Sequence[Baseline]) -> list[Baseline]:
    seen: set[str] = set()
    out = []
    for b in found:
        if b.name not in seen:
            seen.add(b.name)
            out.append(b)
    return out


def best_savings_at(curve: Sequence[Point], flagship_quality: float) -> dict[str, float | None]:
    """The most savings among the sweep's points keeping 95%, 98% and 100% of the
    flagship's quality; None where no point does."""
    found: dict[str, float | None] = {}
    for share in (0.95, 0.98, 1.0):
        ok = [p.savings for p in curve if p.quality >= share * flagship_quality - 1e-12]
        found[f"{round(100 * share)}%"] = max(ok) if ok else None
    return found


def learned_router(
    train: Sequence[OutcomeRow],
    tiers: Sequence[tuple[str, str]],
    encoder: Encoder,
    *,
    good: float,
    long_text: str,
    group_by: GroupBy,
    clusters: int | None,
    seed: int,
) -> Router:
    """A router whose intents and config are learned from ``train``."""
    config = learned_config(train, tiers)
    config = config.model_copy(
        update={"scoring": config.scoring.model_copy(update={"long_text": long_text})}
    )
    groups = group_names(train, encoder, config.scoring, group_by, clusters, seed)
    intents, _ = learn_intents(train, tiers, good=good, groups=groups)
    return Router.in_memory(IntentSet(config=config, intents=intents), encoder)


def evaluate_outcomes(
    train: Sequence[OutcomeRow],
    test: Sequence[OutcomeRow],
    tiers: Sequence[tuple[str, str]],
    encoder: Encoder,
    *,
    good: float = 0.5,
    long_text: str = "tail",
    group_by: GroupBy = "task",
    clusters: int | None = None,
    seed: int = 0,
) -> OutcomesReport:
    """Learn from ``train``, route ``test``, sweep difficulty_confidence, and score every
    choice by the chosen model's real quality and cost, beside the baselines."""
    router = learned_router(
        train,
        tiers,
        encoder,
        good=good,
        long_text=long_text,
        group_by=group_by,
        clusters=clusters,
        seed=seed,
    )
    needed = {m for _, m in tiers}
    usable = [r for r in test if needed <= set(r.outcomes)]
    if not usable:
        raise InputError("no test row has outcomes for every --tiers model")
    cases = outcome_cases(router, usable)
    config = router.config
    by_name = {i.name: i for i in router.intent_set.intents}
    quality = QualityModel(config, by_name)
    curve = sweep(cases, config, by_name, quality, (None,), (None,), CONFIDENCE_GRID)
    found = baselines(usable, tiers, curve, good)
    top = next(b for b in found if b.name == "always-flagship")
    low = next(b for b in found if b.name == "always-cheapest")
    pts = [(p.flagship_share, p.quality) for p in curve]
    return OutcomesReport(
        test_rows=len(usable),
        skipped_rows=len(test) - len(usable),
        flagship=tiers[-1][1],
        tiers=list(tiers),
        long_text=long_text,
        baselines=found,
        curve=curve,
        savings_at=best_savings_at(curve, top.quality),
        apgr=apgr(pts, low.quality, top.quality),
        calls_for_50=calls_for_gap(pts, low.quality, top.quality, 0.5),
        calls_for_80=calls_for_gap(pts, low.quality, top.quality, 0.8),
    )
