"""Offline threshold tuning: sweep the cascade margin and the no-match floor over routed
cases, trace cost against quality, and pick the cheapest point above a quality floor.

Sweeping is pure: cases carry their neighbours (embedded once), and each grid point only
re-runs the policy. Quality comes from labels or logged feedback; where neither says how
a different model would have done, it is estimated, and the report says which.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from modeltriage.core.config import Aggregation, Difficulty, RouterConfig, load_router_config
from modeltriage.core.costs import cheapest_in_tier, estimate_tokens, model_cost
from modeltriage.core.decision import Neighbour, Verdict
from modeltriage.core.intents import Intent
from modeltriage.core.policy import decide
from modeltriage.core.yamlsource import YamlDocument
from modeltriage.errors import ConfigError, MissingDependencyError
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


DEFAULT_FLOORS: tuple[float | None, ...] = (
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
    floor: float | None,
    difficulty_confidence: float | None = None,
) -> RouterConfig:
    thresholds = config.thresholds.model_copy(
        update={
            "margin": margin,
            "min_similarity": floor,
            "difficulty_confidence": difficulty_confidence,
        }
    )
    return config.model_copy(update={"thresholds": thresholds})


def flagship_cost(config: RouterConfig, case: Case) -> float:
    output = config.cost.expected_output_tokens
    spec = cheapest_in_tier(config, config.flagship_tier, case.input_tokens, output)
    if spec.name in case.costs:
        return case.costs[spec.name]
    return model_cost(spec, case.input_tokens, output)


def evaluate_point(
    cases: Sequence[Case],
    config: RouterConfig,
    intents: Mapping[str, Intent],
    quality: QualityModel,
    margin: float | None,
    floor: float | None,
    difficulty_confidence: float | None = None,
) -> Point:
    tuned = with_thresholds(config, margin, floor, difficulty_confidence)
    cost = baseline = 0.0
    judged: list[float] = []
    measured = cascaded = 0
    tiers: Counter[str] = Counter()
    for case in cases:
        verdict = decide(case.neighbours, tuned, intents, case.input_tokens)
        cost += case.costs.get(verdict.model, verdict.estimated_cost_usd)
        plan = verdict.cascade
        if plan is not None:
            # Counted as escalated: both calls are paid and the plan's model answers, so
            # cost is an upper bound and quality what the escalation delivers.
            cost += case.costs.get(plan.escalate_to, plan.estimated_cost_usd)
            if plan.second_opinion is not None:
                cost += case.costs.get(plan.second_opinion, plan.second_opinion_cost_usd)
            verdict = verdict.model_copy(update={"model": plan.escalate_to, "tier": plan.tier})
        baseline += flagship_cost(config, case)
        tiers[verdict.tier] += 1
        cascaded += verdict.cascaded
        value, was_measured = quality.judge(case, verdict)
        if value is not None:
            judged.append(value)
            measured += was_measured
    n = max(1, len(cases))
    return Point(
        margin=margin,
        min_similarity=floor,
        cost_usd=cost,
        savings=1 - cost / baseline if baseline > 0 else 0.0,
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
    floors: Iterable[float | None] = DEFAULT_FLOORS,
    confidences: Iterable[float | None] = (None,),
) -> list[Point]:
    if margins is None:
        margins = default_margins(config.scoring.aggregation)
    ceiling = config.thresholds.cascade_margin
    if ceiling is not None:
        # A margin at or above cascade_margin is a config the router refuses.
        margins = [m for m in margins if m is None or m < ceiling]
    floors, confidences = tuple(floors), tuple(confidences)
    return [
        evaluate_point(cases, config, intents, quality, m, f, c)
        for m in margins
        for f in floors
        for c in confidences
    ]


def flagship_quality(cases: Sequence[Case], config: RouterConfig, quality: QualityModel) -> float:
    """Quality of sending everything to the flagship, judged like any point."""
    output = config.cost.expected_output_tokens
    values = []
    for case in cases:
        spec = cheapest_in_tier(config, config.flagship_tier, case.input_tokens, output)
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
            explanation="always-flagship baseline",
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


def split(cases: Sequence[Case], held_out: float, seed: int) -> tuple[list[Case], list[Case]]:
    """Shuffle with ``seed`` and hold out a share of the cases for reporting."""
    order = list(range(len(cases)))
    random.Random(seed).shuffle(order)
    cut = len(order) - round(len(order) * held_out)
    return [cases[i] for i in order[:cut]], [cases[i] for i in order[cut:]]


def format_threshold(value: float | None) -> str:
    return "off" if value is None else f"{value:g}"


def format_table(points: Sequence[Point], chosen: Point | None, limit: int = 25) -> str:
    """The Pareto-efficient points (no other is both cheaper and better), cheapest first."""
    frontier = pareto(points)
    lines = [
        f"{'margin':>7} {'floor':>6} {'d.conf':>6} {'savings':>8} {'quality':>8} "
        f"{'measured':>9} {'cascade':>8}  tiers"
    ]
    for p in frontier[:limit]:
        mark = "  <- chosen" if p == chosen else ""
        tiers = " ".join(f"{t} {100 * s:.0f}%" for t, s in p.tier_share.items())
        lines.append(
            f"{format_threshold(p.margin):>7} {format_threshold(p.min_similarity):>6} "
            f"{format_threshold(p.difficulty_confidence):>6} {100 * p.savings:7.1f}% "
            f"{p.quality:8.3f} {100 * p.measured_share:8.0f}% "
            f"{100 * p.cascade_rate:7.1f}%  {tiers}{mark}"
        )
    return "\n".join(lines)


def pareto(points: Sequence[Point]) -> list[Point]:
    ordered = sorted(points, key=lambda p: (p.cost_usd, -p.quality))
    frontier: list[Point] = []
    for p in ordered:
        if not frontier or p.quality > frontier[-1].quality:
            frontier.append(p)
    return frontier


def plot(
    points: Sequence[Point],
    chosen: Point | None,
    baseline_quality: float,
    path: Path,
    title: str,
) -> None:
    """Cost/quality curve as a PNG: every grid point, the frontier, the chosen point."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("matplotlib", "eval") from None
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.scatter(
        [1 - p.savings for p in points],
        [p.quality for p in points],
        s=10,
        color="#bbbbbb",
        label="grid points",
    )
    front = pareto(points)
    ax.plot(
        [1 - p.savings for p in front],
        [p.quality for p in front],
        color="#1f77b4",
        marker="o",
        markersize=3,
        label="frontier",
    )
    ax.scatter([1.0], [baseline_quality], marker="s", color="black", label="always flagship")
    if chosen is not None:
        ax.scatter(
            [1 - chosen.savings],
            [chosen.quality],
            s=120,
            facecolors="none",
            edgecolors="red",
            linewidths=2,
            label=f"chosen: margin {format_threshold(chosen.margin)}, "
            f"floor {format_threshold(chosen.min_similarity)}",
        )
    ax.set_xlabel("cost relative to always-flagship")
    ax.set_ylabel("quality")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


_VALUE = re.compile(
    r"^(?P<head>\s*(?P<key>[A-Za-z_]+)\s*:\s*)(?P<value>[^#\n]*?)(?P<tail>\s*(#.*)?)$"
)


def write_thresholds(
    config_path: Path,
    margin: float | None,
    floor: float | None,
    difficulty_confidence: float | None = None,
) -> Path:
    """Set ``thresholds.margin`` and ``thresholds.min_similarity`` in router.yaml in place,
    keeping comments and layout; the old file is kept beside it. Returns the backup path."""
    doc = YamlDocument.read(config_path)
    original = config_path.read_text(encoding="utf-8")
    lines = original.splitlines(keepends=True)
    values = {"margin": margin, "min_similarity": floor}
    thresholds = doc.data.get("thresholds") if isinstance(doc.data, dict) else None
    # Only mention difficulty_confidence where it matters: set, or already in the file.
    if difficulty_confidence is not None or (
        isinstance(thresholds, dict) and "difficulty_confidence" in thresholds
    ):
        values["difficulty_confidence"] = difficulty_confidence
    if not isinstance(thresholds, dict):
        block = "\nthresholds:\n" + "".join(
            f"  {k}: {'null' if v is None else v}\n" for k, v in values.items()
        )
        updated = original.rstrip("\n") + "\n" + block
    else:
        missing = []
        for key, value in values.items():
            text = "null" if value is None else f"{value:g}"
            if key not in thresholds:
                missing.append(f"  {key}: {text}\n")
                continue
            line = doc.line_of(("thresholds", key))
            match = None if line is None else _VALUE.match(lines[line - 1].rstrip("\n"))
            if line is None or match is None or match["key"] != key:
                raise ConfigError(
                    f"cannot update thresholds.{key} in place; edit it by hand", config_path, line
                )
            newline = "\n" if lines[line - 1].endswith("\n") else ""
            lines[line - 1] = f"{match['head']}{text}{match['tail'] or ''}{newline}"
        if missing:
            at = doc.line_of(("thresholds",))
            assert at is not None
            lines[at:at] = missing
        updated = "".join(lines)
    tmp = config_path.with_name(f".{config_path.name}.tmp")
    tmp.write_text(updated, encoding="utf-8")
    try:
        load_router_config(tmp)  # never leave a config the router would refuse
    except ConfigError:
        tmp.unlink()
        raise
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    backup = config_path.with_name(f"{config_path.name}.bak-{stamp}")
    backup.write_text(original, encoding="utf-8")
    tmp.replace(config_path)
    return backup


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
    floors: Iterable[float | None] = DEFAULT_FLOORS,
    confidences: Iterable[float | None] = (None,),
) -> TuneResult:
    """Sweep on a seeded split, choose on it, report the choice on the held-out part.

    ``floor`` is relative: the chosen point keeps quality >= floor x always-flagship's.
    """
    if not 0 < floor <= 1:
        raise ValueError("floor is a share of the flagship's quality, in (0, 1]")
    if not 0 <= held_out < 1:
        raise ValueError("held_out is a share of the cases, in [0, 1)")
    fit, test = split(cases, held_out, seed)
    if not fit:
        raise ValueError("no cases to tune on")
    points = sweep(fit, config, intents, quality, margins, floors, confidences)
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
) -> tuple[list[Case], QualityModel]:
    """Cases from logged decisions (re-routed for their neighbours) and their feedback.

    A feedback row counts for the model it names, else for the model the decision
    chose. Models nobody measured on a request are judged by their tier's mean feedback
    over the whole log; the flagship, if never measured, is assumed perfect (1.0).
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
