"""`modeltriage diff`: what an intent change does to the same requests.

The requests are routed through two intent sets (two directories, or one directory's
intents under two router.yaml files); the decisions that changed are grouped with example
texts, and each side's routed cost per day, per-tier share, cascade rate and planned
cascades come from :func:`modeltriage.learn.simulation.simulate`. Bounds the caller gives
(cost per day, cascade rate) turn into violations: the command's exit status.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from modeltriage.core.config import ROUTER_CONFIG_FILE
from modeltriage.core.decision import Decision
from modeltriage.core.encoders import Encoder
from modeltriage.core.intents import (
    IntentSet,
    load_intents,
    load_router_config,
    validate_intents,
)
from modeltriage.core.yamlsource import YamlDocument
from modeltriage.errors import ConfigError, InputError
from modeltriage.learn.lint import index_for_lint
from modeltriage.learn.simulation import SimulationReport, TrafficRow, simulate
from modeltriage.loading import encoder_for
from modeltriage.router import Router, route_all


@dataclass(frozen=True)
class Side:
    """One side of a diff: what it was given as, and the intent set it stands for."""

    label: str
    intent_set: IntentSet


def load_side(path: Path, intents_dir: Path) -> Side:
    """An intents directory, or a router.yaml applied to the intents in ``intents_dir``."""
    if path.is_dir():
        return Side(str(path), load_intents(path))
    if not path.is_file():
        raise ConfigError("no such intents directory or router.yaml", path)
    base = load_intents(intents_dir)
    config = load_router_config(path)
    problems = config.step_problems(intent.name for intent in base.intents)
    if problems:
        loc, message = problems[0]
        raise YamlDocument.read(path).error(message, loc)
    validate_intents(config, ((intent, None) for intent in base.intents))
    label = f"{path} (intents of {intents_dir})" if path.name == ROUTER_CONFIG_FILE else str(path)
    return Side(label, base.model_copy(update={"config": config}))


@dataclass(frozen=True)
class DiffBounds:
    """Limits on the new side: cost per day up by at most ``cost_increase_pct`` percent,
    cascade rate up by at most ``cascade_increase_pts`` percentage points."""

    cost_increase_pct: float | None = None
    cascade_increase_pts: float | None = None

    @classmethod
    def checked(cls, cost: float | None, cascade: float | None) -> DiffBounds:
        for flag, value in (("--max-cost-increase", cost), ("--max-cascade-increase", cascade)):
            if value is not None and not math.isfinite(value):
                raise InputError(f"{flag} must be a finite number, got {value}")
        return cls(cost, cascade)


@dataclass(frozen=True)
class DecisionChange:
    """Requests whose decision moved the same way, with a few of their texts."""

    old: dict[str, str | None]
    new: dict[str, str | None]
    count: int
    examples: list[str]


@dataclass(frozen=True)
class IntentDiff:
    old: str
    new: str
    requests: int
    changed: int
    changes: list[DecisionChange]
    old_report: SimulationReport
    new_report: SimulationReport
    notes: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


_FIELDS = ("intent", "tier", "model", "reason")


def _key(decision: Decision) -> tuple[str | None, ...]:
    return tuple(getattr(decision, name) for name in _FIELDS)


def decision_changes(
    texts: Sequence[str], old: Sequence[Decision], new: Sequence[Decision], examples: int = 3
) -> list[DecisionChange]:
    """Changed decisions grouped by (old, new) intent, tier, model and reason, most
    frequent first."""
    counts: Counter[tuple[tuple[str | None, ...], tuple[str | None, ...]]] = Counter()
    seen: defaultdict[tuple[tuple[str | None, ...], tuple[str | None, ...]], list[str]]
    seen = defaultdict(list)
    for text, a, b in zip(texts, old, new, strict=True):
        pair = (_key(a), _key(b))
        if pair[0] == pair[1]:
            continue
        counts[pair] += 1
        if len(seen[pair]) < examples and text not in seen[pair]:
            seen[pair].append(text)
    return [
        DecisionChange(
            dict(zip(_FIELDS, a, strict=True)), dict(zip(_FIELDS, b, strict=True)), n, seen[(a, b)]
        )
        for (a, b), n in counts.most_common()
    ]


def _router(side: Side, encoder: Encoder) -> tuple[Router, str | None]:
    loaded, note = index_for_lint(side.intent_set, encoder)
    return Router(
        side.intent_set, encoder, loaded
    ), None if note is None else f"{side.label}: {note}"


def _encoders(old: Side, new: Side, encoder: Encoder | None) -> tuple[Encoder, Encoder, str | None]:
    if encoder is not None:
        return encoder, encoder, None
    settings = (old.intent_set.config.encoder, new.intent_set.config.encoder)
    same_base = old.intent_set.source == new.intent_set.source
    if settings[0] == settings[1] and (settings[0].path is None or same_base):
        shared = encoder_for(new.intent_set)
        return shared, shared, None
    first, second = encoder_for(old.intent_set), encoder_for(new.intent_set)
    note = None
    if first.model_id != second.model_id:
        note = (
            f"the two sides use different encoders: {old.label} embeds with {first.model_id}, "
            f"{new.label} with {second.model_id}; each side embeds the requests with its own"
        )
    return first, second, note


def diff_intent_sets(
    old: Side,
    new: Side,
    texts: Sequence[str],
    encoder: Encoder | None,
    requests_per_day: int,
    bounds: DiffBounds = DiffBounds(),
    *,
    examples: int = 3,
) -> IntentDiff:
    """Route ``texts`` through both sides and compare (see the module docstring).
    ``encoder`` replaces both sides' own (tests); None: each side's router.yaml's."""
    if not texts:
        raise InputError("no requests to route")
    old_encoder, new_encoder, note = _encoders(old, new, encoder)
    old_router, old_note = _router(old, old_encoder)
    new_router, new_note = _router(new, new_encoder)
    old_decisions = route_all(old_router, texts)
    new_decisions = route_all(new_router, texts)
    rows = [TrafficRow(text) for text in texts]
    old_report = simulate(rows, old_decisions, old.intent_set.config, requests_per_day)
    new_report = simulate(rows, new_decisions, new.intent_set.config, requests_per_day)
    changes = decision_changes(texts, old_decisions, new_decisions, examples)
    return IntentDiff(
        old=old.label,
        new=new.label,
        requests=len(texts),
        changed=sum(c.count for c in changes),
        changes=changes,
        old_report=old_report,
        new_report=new_report,
        notes=[n for n in (note, old_note, new_note) if n is not None],
        violations=bound_violations(old_report, new_report, bounds),
    )


def bound_violations(old: SimulationReport, new: SimulationReport, bounds: DiffBounds) -> list[str]:
    out = []
    limit = bounds.cost_increase_pct
    if limit is not None:
        base = old.daily_cost_usd
        rise = 100 * (new.daily_cost_usd - base) / base if base > 0 else 0.0
        if rise > limit:
            out.append(f"cost per day rises {rise:+.1f}%, over --max-cost-increase {limit}%")
    points = bounds.cascade_increase_pts
    if points is not None:
        rise = 100 * (new.cascade_rate - old.cascade_rate)
        if rise > points:
            out.append(
                f"cascade rate rises {rise:+.1f} points, over --max-cascade-increase {points}"
            )
    return out


def _cell(text: str | None) -> str:
    if text is None:
        return "-"
    text = text.replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= 80 else text[:79] + "…"


def _moved(old: str | None, new: str | None) -> str:
    return _cell(old) if old == new else f"{_cell(old)} → {_cell(new)}"


def format_diff_markdown(diff: IntentDiff) -> str:
    """A pull-request comment: summary table, bounds, changed decisions."""
    a, b = diff.old_report, diff.new_report

    def pct(x: float) -> str:
        return f"{100 * x:.1f}%"

    def pts(x: float, y: float) -> str:
        return f"{100 * (y - x):+.1f} pts"

    cost_change = (
        f"{100 * (b.daily_cost_usd - a.daily_cost_usd) / a.daily_cost_usd:+.1f}%"
        if a.daily_cost_usd > 0
        else "-"
    )
    share = 0.0 if not diff.requests else diff.changed / diff.requests
    lines = [
        f"### modeltriage diff: `{diff.old}` → `{diff.new}`",
        "",
        f"{diff.requests} requests, **{diff.changed} decisions changed** ({pct(share)}); "
        f"costs at {a.requests_per_day:,} requests/day.",
        "",
        "| | old | new | change |",
        "|---|---:|---:|---:|",
        f"| cost per day | ${a.daily_cost_usd:,.2f} | ${b.daily_cost_usd:,.2f} | {cost_change} |",
        f"| savings vs all-flagship | {pct(a.savings_share)} | {pct(b.savings_share)} "
        f"| {pts(a.savings_share, b.savings_share)} |",
        f"| cascade rate | {pct(a.cascade_rate)} | {pct(b.cascade_rate)} "
        f"| {pts(a.cascade_rate, b.cascade_rate)} |",
        f"| planned cascades | {pct(a.planned_rate)} | {pct(b.planned_rate)} "
        f"| {pts(a.planned_rate, b.planned_rate)} |",
    ]
    for tier in dict.fromkeys([*a.tier_share, *b.tier_share]):
        x, y = a.tier_share.get(tier, 0.0), b.tier_share.get(tier, 0.0)
        lines.append(f"| tier {tier} | {pct(x)} | {pct(y)} | {pts(x, y)} |")
    lines.append("")
    if diff.notes:
        lines += [*(f"> {note}" for note in diff.notes), ""]
    if diff.violations:
        lines += [f"**Bound exceeded:** {v}" for v in diff.violations]
        lines.append("")
    if diff.changes:
        lines += [
            "#### Changed decisions",
            "",
            "| requests | intent | tier | model | reason | examples |",
            "|---:|---|---|---|---|---|",
        ]
        for c in diff.changes:
            moved = [_moved(c.old[f], c.new[f]) for f in _FIELDS]
            examples = "; ".join(f"“{_cell(t)}”" for t in c.examples)
            lines.append(f"| {c.count} | " + " | ".join(moved) + f" | {examples} |")
    else:
        lines.append("No decision changed.")
    return "\n".join(lines)
