"""Offline threshold tuning: sweep the cascade margin and the no-match ``min_similarity``
over routed cases, trace cost against quality, and pick the cheapest point above a
quality floor.

Sweeping is pure: cases carry their neighbours (embedded once), and each grid point only
re-runs the policy. Quality comes from labels or logged feedback; where neither says how
a different model would have done, it is estimated, and the report says which.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from modeltriage.core.config import Aggregation, Difficulty, RouterConfig
from modeltriage.core.costs import (
    cheapest_in_tier,
    estimate_tokens,
    flagship_cost_usd,
    savings,
)
from modeltriage.core.decision import Neighbour, Verdict
from modeltriage.core.intents import Intent
from modeltriage.core.policy import decide
from modeltriage.learn.splits import seeded_split
from modeltriage.log.entries import FeedbackEntry, LogEntry

# The margin is in the aggregation's units: a cosine gap for max and mean_top2, a share
# of the vote (0..1) for vote, so each gets its own grid.
SIMILARITY_MARGINS: tuple[float | None, ...] = (
    None,
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
)
VOTE_MARGINS: tuple[float | None, ...] = (
    None,
    0.0,
    0.05,
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.4,
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
)


def default_margins(aggregation: Aggregation) -> tuple[float | None, ...]:
    return VOTE_MARGINS if aggregation == "vote" else SIMILARITY_MARGINS


DEFAULT_MIN_SIMILARITIES: tuple[float | None, ...] = (
    None,
    0.2,
    0.25,
    0.3,
    0.35,
    0.4,
    0.45,
    0.5,
    0.55,
    0.6,
    0.7,
)


@dataclass(frozen=True)
class Case:
    """One request with its nearest exemplars and what is known of answer quality.

    ``expected_intent``: for labelled data, the right intent ("" for out of scope),
    None when unlabelled; ``expected_difficulty`` overrides that intent's difficulty.
    ``measured``: mean observed quality per model (feedback).
    """

    neighbours: tuple[Neighbour, ...]
    input_tokens: int
    expected_intent: str | None = None
    expected_difficulty: Difficulty | None = None
    measured: Mapping[str, float] = field(default_factory=dict)
    # Real cost per model where known (labelled outcomes); else the router's estimate.
    costs: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Point:
    margin: float | None
    min_similarity: float | None
    cost_usd: float
    savings: float
    quality: float
    measured_share: float
    tier_share: dict[str, float]
    cascade_rate: float
    difficulty_confidence: float | None = None
    flagship_share: float = 0.0


@dataclass(frozen=True)
class QualityModel:
    """How quality is judged when a case has no measurement for the chosen model.

    Labelled cases: a request is served well when it reaches a tier at least as strong
    as its labelled difficulty needs (out of scope: the no-match tier). A wrong intent of
    the same tier costs nothing, since the model never sees the intent. Unlabelled
    cases: the mean quality observed for the chosen tier, if any.
    """

    config: RouterConfig
    intents: Mapping[str, Intent]
    tier_quality: Mapping[str, float] = field(default_factory=dict)

    def required_tier(self, case: Case) -> str | None:
        if case.expected_intent is None:
            return None
        if case.expected_intent == "" and case.expected_difficulty is None:
            no_match = self.config.no_match
            if no_match.model is not None:
                return self.config.model(no_match.model).tier
            return self.config.flagship_tier if no_match.tier is None else no_match.tier
        difficulty = case.expected_difficulty
        if difficulty is None:
            difficulty = self.intents[case.expected_intent].difficulty
        return self.config.tier_for(difficulty)

    def judge(self, case: Case, verdict: Verdict) -> tuple[float | None, bool]:
        """Quality of ``verdict`` for ``case`` and whether it was measured."""
        if verdict.model in case.measured:
            return case.measured[verdict.model], True
        required = self.required_tier(case)
        if required is not None:
            tiers = self.config.tiers
            return (1.0 if tiers.index(verdict.tier) >= tiers.index(required) else 0.0), False
        return self.tier_quality.get(verdict.tier), False


def with_thresholds(
    config: RouterConfig,
    margin: float | None,
    min_similarity: float | None,
    difficulty_confidence: float | None = None,
) -> RouterConfig:
    thresholds = config.thresholds.model_copy(
        update={
            "margin": margin,
            "min_similarity": min_similarity,
            "difficulty_confidence": difficulty_confidence,
        }
    )
    return config.model_copy(update={"thresholds": thresholds})


def flagship_cost(config: RouterConfig, case: Case) -> float:
    """What always-flagship pays for ``case``: the flagship's measured cost where the case
    has one (labelled outcomes), else the router's estimate."""
    output = config.cost.expected_output_tokens
    spec = cheapest_in_tier(config, config.flagship_tier, case.input_tokens, output)
    if spec.name in case.costs:
        return case.costs[spec.name]
    return flagship_cost_usd(config, case.input_tokens)


@dataclass(frozen=True)
class CaseOutcome:
    """What one case's verdict costs and is worth, a cascade plan counted as escalated
    (both calls paid, the plan's model answers), as every sweep point counts it.

    ``first_cost_usd``: the cost if the plan does not escalate; ``routed_tier``: the
    tier of the model that answers first.
    """

    cost_usd: float
    first_cost_usd: float
    tier: str
    routed_tier: str
    planned: bool
    cascaded: bool
    quality: float | None
    measured: bool


def case_outcome(case: Case, verdict: Verdict, quality: QualityModel) -> CaseOutcome:
    """Cost and quality of ``verdict`` for ``case``: the one place a sweep prices and
    judges a decision."""
    first = case.costs.get(verdict.model, verdict.estimated_cost_usd)
    cost = first
    answered = verdict
    plan = verdict.cascade
    if plan is not None:
        # Counted as escalated: both calls are paid and the plan's model answers, so
        # cost is an upper bound and quality what the escalation delivers.
        cost += case.costs.get(plan.escalate_to, plan.estimated_cost_usd)
        if plan.second_opinion is not None:
            second = case.costs.get(plan.second_opinion, plan.second_opinion_cost_usd)
            cost += second
            first += second
        answered = verdict.model_copy(update={"model": plan.escalate_to, "tier": plan.tier})
    value, was_measured = quality.judge(case, answered)
    return CaseOutcome(
        cost_usd=cost,
        first_cost_usd=first,
        tier=answered.tier,
        routed_tier=verdict.tier,
        planned=plan is not None,
        cascaded=verdict.cascaded,
        quality=value,
        measured=was_measured,
    )


def evaluate_point(
    cases: Sequence[Case],
    config: RouterConfig,
    intents: Mapping[str, Intent],
    quality: QualityModel,
    margin: float | None,
    min_similarity: float | None,
    difficulty_confidence: float | None = None,
) -> Point:
    """Cost and quality of routing ``cases`` at one setting of the thresholds."""
    tuned = with_thresholds(config, margin, min_similarity, difficulty_confidence)
    cost = baseline = 0.0
    judged: list[float] = []
    measured = cascaded = 0
    tiers: Counter[str] = Counter()
    for case in cases:
        verdict = decide(case.neighbours, tuned, intents, case.input_tokens)
        outcome = case_outcome(case, verdict, quality)
        cost += outcome.cost_usd
        baseline += flagship_cost(config, case)
        tiers[outcome.tier] += 1
        cascaded += outcome.cascaded
        if outcome.quality is not None:
            judged.append(outcome.quality)
            measured += outcome.measured
    n = max(1, len(cases))
    return Point(
        margin=margin,
        min_similarity=min_similarity,
        cost_usd=cost,
        savings=savings(cost, baseline),
        quality=sum(judged) / len(judged) if judged else float("nan"),
        measured_share=measured / max(1, len(judged)),
        tier_share={t: tiers[t] / n for t in config.tiers},
        cascade_rate=cascaded / n,
        difficulty_confidence=difficulty_confidence,
        flagship_share=tiers[config.flagship_tier] / n,
    )


def sweep(
    cases: Sequence[Case],
    config: RouterConfig,
    intents: Mapping[str, Intent],
    quality: QualityModel,
    margins: Iterable[float | None] | None = None,
    min_similarities: Iterable[float | None] = DEFAULT_MIN_SIMILARITIES,
    confidences: Iterable[float | None] = (None,),
) -> list[Point]:
    """Every grid point: each margin by each ``min_similarity`` by each confidence."""
    if margins is None:
        margins = default_margins(config.scoring.aggregation)
    ceiling = config.thresholds.cascade_margin
    if ceiling is not None:
        # A margin at or above cascade_margin is a config the router refuses.
        margins = [m for m in margins if m is None or m < ceiling]
    similarities, confidences = tuple(min_similarities), tuple(confidences)
    return [
        evaluate_point(cases, config, intents, quality, m, s, c)
        for m in margins
        for s in similarities
        for c in confidences
    ]


def flagship_quality(cases: Sequence[Case], config: RouterConfig, quality: QualityModel) -> float:
    """Quality of sending everything to the flagship, judged like any point."""
    return tier_quality(cases, config, quality, config.flagship_tier)


def tier_quality(
    cases: Sequence[Case], config: RouterConfig, quality: QualityModel, tier: str
) -> float:
    """Quality of sending everything to ``tier``'s cheapest model, judged like any point."""
    output = config.cost.expected_output_tokens
    values = []
    for case in cases:
        spec = cheapest_in_tier(config, tier, case.input_tokens, output)
        verdict = Verdict(
            intent=None,
            runner_up=None,
            difficulty=None,
            tier=spec.tier,
            model=spec.name,
            fallbacks=[],
            confidence=0.0,
            margin=None,
            cascaded=True,
            reason="no_match",
            explanation=f"always-{tier} baseline",
            estimated_cost_usd=0.0,
            input_tokens=case.input_tokens,
        )
        value, _ = quality.judge(case, verdict)
        if value is not None:
            values.append(value)
    return sum(values) / len(values) if values else float("nan")


def choose(points: Sequence[Point], min_quality: float) -> Point | None:
    """Most savings with quality at or above ``min_quality``; ties: higher quality, then
    the point listed first (the grid order), so the choice is deterministic."""
    eligible = [p for p in points if p.quality >= min_quality]
    if not eligible:
        return None
    return min(eligible, key=lambda p: (-round(p.savings, 9), -p.quality, points.index(p)))


@dataclass(frozen=True)
class TuneResult:
    points: list[Point]
    chosen: Point | None
    held_out: Point | None
    flagship_quality: float
    min_quality: float
    tune_cases: int
    held_out_cases: int
    measured_share: float


def tune(
    cases: Sequence[Case],
    config: RouterConfig,
    intents: Mapping[str, Intent],
    quality: QualityModel,
    *,
    floor: float,
    held_out: float = 0.3,
    seed: int = 0,
    margins: Iterable[float | None] | None = None,
    min_similarities: Iterable[float | None] = DEFAULT_MIN_SIMILARITIES,
    confidences: Iterable[float | None] = (None,),
) -> TuneResult:
    """Sweep on a seeded split, choose on it, report the choice on the held-out part.

    ``floor`` is relative: the chosen point keeps quality >= floor x always-flagship's.
    """
    if not 0 < floor <= 1:
        raise ValueError("floor is a share of the flagship's quality, in (0, 1]")
    if not 0 <= held_out < 1:
        raise ValueError("held_out is a share of the cases, in [0, 1)")
    fit, test = seeded_split(cases, held_out, seed)
    if not fit:
        raise ValueError("no cases to tune on")
    points = sweep(fit, config, intents, quality, margins, min_similarities, confidences)
    baseline = flagship_quality(fit, config, quality)
    chosen = choose(points, floor * baseline)
    tested = (
        evaluate_point(
            test,
            config,
            intents,
            quality,
            chosen.margin,
            chosen.min_similarity,
            chosen.difficulty_confidence,
        )
        if chosen is not None and test
        else None
    )
    return TuneResult(
        points=points,
        chosen=chosen,
        held_out=tested,
        flagship_quality=baseline,
        min_quality=floor * baseline,
        tune_cases=len(fit),
        held_out_cases=len(test),
        measured_share=max((p.measured_share for p in points), default=0.0),
    )


def cases_from_routes(
    texts: Sequence[str],
    neighbours: Sequence[Sequence[Neighbour]],
    config: RouterConfig,
    labels: Sequence[str | None] | None = None,
    difficulties: Sequence[Difficulty | None] | None = None,
    measured: Sequence[Mapping[str, float]] | None = None,
) -> list[Case]:
    """Assemble cases from routed texts; a label of None means out of scope ("")."""
    cases = []
    for i, text in enumerate(texts):
        label: str | None = None
        if labels is not None:
            label = labels[i] if labels[i] is not None else ""
        cases.append(
            Case(
                neighbours=tuple(neighbours[i]),
                input_tokens=estimate_tokens(text, config.cost.chars_per_token),
                expected_intent=label,
                expected_difficulty=None if difficulties is None else difficulties[i],
                measured={} if measured is None else dict(measured[i]),
            )
        )
    return cases


def cases_from_log(
    entries: Sequence[LogEntry],
    feedback: Sequence[FeedbackEntry],
    neighbours: Sequence[Sequence[Neighbour]],
    config: RouterConfig,
    intents: Mapping[str, Intent],
    model_feedback: Mapping[str, tuple[int, float]] | None = None,
) -> tuple[list[Case], QualityModel]:
    """Cases from logged decisions (re-routed for their neighbours) and their feedback.

    A feedback row counts for the model it names, else for the model the decision
    chose. Models nobody measured on a request are judged by their tier's mean feedback
    over the whole log (``model_feedback``: (rows, summed quality) per model, when
    ``entries`` are a sample of it); the flagship, if never measured, is assumed
    perfect (1.0).
    """
    by_decision: dict[str, dict[str, list[float]]] = {}
    chosen = {e.decision_id: e for e in entries}
    tier_of = {m.name: m.tier for m in config.models}
    per_tier: dict[str, list[float]] = {}
    for fb in feedback:
        entry = chosen.get(fb.decision_id)
        if entry is None:
            continue
        model = fb.model or entry.model
        by_decision.setdefault(fb.decision_id, {}).setdefault(model, []).append(fb.quality)
        tier = tier_of.get(model)
        if tier is not None:
            per_tier.setdefault(tier, []).append(fb.quality)
    tier_quality = {tier: sum(q) / len(q) for tier, q in per_tier.items()}
    if model_feedback is not None:
        sums: dict[str, tuple[int, float]] = {}
        for model, (n, total) in model_feedback.items():
            tier = tier_of.get(model)
            if tier is not None:
                had = sums.get(tier, (0, 0.0))
                sums[tier] = (had[0] + n, had[1] + total)
        tier_quality = {tier: total / n for tier, (n, total) in sums.items() if n}
    tier_quality.setdefault(config.flagship_tier, 1.0)
    cases = [
        Case(
            neighbours=tuple(neighbours[i]),
            input_tokens=entry.input_tokens
            if entry.input_tokens is not None
            else estimate_tokens(entry.text or "", config.cost.chars_per_token),
            measured={
                model: sum(q) / len(q)
                for model, q in by_decision.get(entry.decision_id, {}).items()
            },
        )
        for i, entry in enumerate(entries)
    ]
    return cases, QualityModel(config, intents, tier_quality)
