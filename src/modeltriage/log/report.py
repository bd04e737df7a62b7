"""Summaries of the decision log: traffic per tier and model, spend against all-flagship,
and how much of it has a quality signal. Pure: takes entries, returns figures."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from modeltriage.core.config import RouterConfig
from modeltriage.core.costs import (
    estimate_tokens,
    flagship_cost_usd,
    savings,
)
from modeltriage.log.entries import EventEntry, FeedbackEntry, LogEntry


@dataclass(frozen=True)
class LogSummary:
    requests: int
    first: str | None
    last: str | None
    tier_share: dict[str, float]
    model_share: dict[str, float]
    reason_share: dict[str, float]
    cascade_rate: float
    spend_usd: float
    flagship_spend_usd: float | None
    savings_share: float | None
    compared_requests: int
    feedback_rows: int
    feedback_coverage: float
    mean_quality_by_tier: dict[str, float]
    feedback_by_tier: dict[str, int]
    # What happened after the decisions (events of the listed decisions only).
    planned: int = 0  # decisions with a cascade plan
    planned_checked: int = 0  # ... whose answer was checked (POST /escalate)
    planned_escalated: int = 0  # ... and escalated
    answer_checks: int = 0
    escalations: int = 0
    failovers: int = 0
    failovers_exhausted: int = 0  # no model was left in the chain

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _input_tokens(entry: LogEntry, config: RouterConfig) -> int | None:
    if entry.input_tokens is not None:
        return entry.input_tokens
    if entry.text is not None:
        return estimate_tokens(entry.text, config.cost.chars_per_token)
    return None  # logged before schema 3 in hash-only mode: nothing to estimate from


def escalated(event: EventEntry) -> bool:
    """Whether an answer check said to escalate (its detail is check_answer's)."""
    return event.kind == "escalation" and event.detail.startswith("escalate")


def summarise(
    entries: Sequence[LogEntry],
    feedback: Sequence[FeedbackEntry],
    config: RouterConfig,
    events: Sequence[EventEntry] = (),
) -> LogSummary:
    n = len(entries)
    spend = sum(e.estimated_cost_usd for e in entries)
    compared_spend = flagship = 0.0
    counted = 0
    for e in entries:
        tokens = _input_tokens(e, config)
        if tokens is None:
            continue
        flagship += flagship_cost_usd(config, tokens)
        compared_spend += e.estimated_cost_usd
        counted += 1
    compared = savings(compared_spend, flagship)

    ids = {e.decision_id: e for e in entries}
    quality: defaultdict[str, list[float]] = defaultdict(list)
    covered: set[str] = set()
    rows = 0
    for fb in feedback:
        entry = ids.get(fb.decision_id)
        if entry is None:
            continue
        rows += 1
        covered.add(fb.decision_id)
        quality[entry.tier].append(fb.quality)

    def shares(counter: Counter[str]) -> dict[str, float]:
        return {k: v / n for k, v in counter.most_common()} if n else {}

    mine = [ev for ev in events if ev.decision_id in ids]
    checks = [ev for ev in mine if ev.kind == "escalation"]
    failovers = [ev for ev in mine if ev.kind == "failover"]
    planned = {e.decision_id for e in entries if e.cascade_to is not None}
    checked = {ev.decision_id for ev in checks if ev.decision_id in planned}
    raised = {ev.decision_id for ev in checks if ev.decision_id in planned and escalated(ev)}

    times = sorted(e.created_at for e in entries)
    return LogSummary(
        requests=n,
        first=times[0].isoformat(timespec="seconds") if times else None,
        last=times[-1].isoformat(timespec="seconds") if times else None,
        tier_share=shares(Counter(e.tier for e in entries)),
        model_share=shares(Counter(e.model for e in entries)),
        reason_share=shares(Counter(e.reason for e in entries)),
        cascade_rate=sum(e.cascaded for e in entries) / n if n else 0.0,
        spend_usd=spend,
        flagship_spend_usd=flagship if counted else None,
        savings_share=compared if counted else None,
        compared_requests=counted,
        feedback_rows=rows,
        feedback_coverage=len(covered) / n if n else 0.0,
        mean_quality_by_tier={t: sum(q) / len(q) for t, q in sorted(quality.items())},
        feedback_by_tier={t: len(q) for t, q in sorted(quality.items())},
        planned=len(planned),
        planned_checked=len(checked),
        planned_escalated=len(raised),
        answer_checks=len(checks),
        escalations=sum(escalated(ev) for ev in checks),
        failovers=len(failovers),
        failovers_exhausted=sum(ev.to_model is None for ev in failovers),
    )


def format_summary(summary: LogSummary) -> str:
    def pct(x: float) -> str:
        return f"{100 * x:.1f}%"

    if summary.requests == 0:
        return "no decisions logged"
    lines = [
        f"{summary.requests} decisions from {summary.first} to {summary.last}",
        f"  estimated spend: ${summary.spend_usd:,.4f}",
    ]
    if summary.flagship_spend_usd is not None and summary.savings_share is not None:
        lines.append(
            f"  all-flagship would have cost: ${summary.flagship_spend_usd:,.4f} "
            f"(savings {pct(summary.savings_share)} over {summary.compared_requests} requests)"
        )
    lines += [
        f"  cascade rate: {pct(summary.cascade_rate)}",
        "  per tier:   " + ", ".join(f"{k} {pct(v)}" for k, v in summary.tier_share.items()),
        "  per model:  " + ", ".join(f"{k} {pct(v)}" for k, v in summary.model_share.items()),
        "  per reason: " + ", ".join(f"{k} {pct(v)}" for k, v in summary.reason_share.items()),
        f"  feedback: {summary.feedback_rows} rows, {pct(summary.feedback_coverage)} of "
        "decisions have some",
    ]
    for tier, mean in summary.mean_quality_by_tier.items():
        lines.append(
            f"    mean quality on {tier}: {mean:.3f} ({summary.feedback_by_tier[tier]} rows)"
        )
    if summary.planned:
        lines.append(
            f"  cascade plans: {summary.planned} decisions, {summary.planned_checked} answers "
            f"checked, {summary.planned_escalated} escalated"
        )
    if summary.answer_checks or summary.failovers:
        lines.append(
            f"  answer checks: {summary.answer_checks} ({summary.escalations} escalated); "
            f"failovers: {summary.failovers} ({summary.failovers_exhausted} with no model left)"
        )
    return "\n".join(lines)


def format_recent(entries: Sequence[LogEntry], width: int = 60) -> str:
    lines = []
    for e in entries:
        text = e.text if e.text is not None else f"<sha256 {e.text_sha256[:12]}>"
        text = text.replace("\n", " ")
        if len(text) > width:
            text = text[: width - 1] + "…"
        lines.append(
            f"{e.created_at.isoformat(timespec='seconds')}  {e.decision_id[:12]}  "
            f"{e.tier:<9} {e.model:<18} {e.reason:<17} {e.intent or '-':<24} {text}"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class CheckedPlans:
    """Cascade plans in a log whose cheap answer was checked (POST /escalate), and how
    many of those checks escalated: what `simulate --escalation-rate log` measures."""

    checked: int
    escalated: int

    @property
    def escalation_rate(self) -> float | None:
        """Share of checked plans that escalated; None when no plan was checked."""
        return self.escalated / self.checked if self.checked else None


def checked_plans(
    entries: Sequence[LogEntry], events: Sequence[EventEntry], config: RouterConfig
) -> CheckedPlans:
    """Count the checked and escalated cascade plans among ``entries``."""
    summary = summarise(entries, [], config, events)
    return CheckedPlans(checked=summary.planned_checked, escalated=summary.planned_escalated)
