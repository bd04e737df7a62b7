"""What the decision log says of checked cascade answers, for `tune --learn-cascade`.

A cascade plan's cost and quality depend on its answer check: a kept cheap answer costs
the cheap call (and any second opinion) and is worth what that answer was worth; an
escalated one adds the stronger call and is worth its answer. Counting every planned
decision as escalated (the sweep's default) prices plans at their worst and makes a
higher ``cascade_margin`` look useless. The log knows better: each ``POST /escalate`` on a
decision is an event (``to_model`` set when it escalated), and feedback names the model
it judges. From those, :func:`checked_answers` measures how often checks escalate and how
good kept and escalated answers were; the sweep then prices a plan by its own logged check
where there was one, else by that rate. Pure: entries in, numbers out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from modeltriage.log.entries import EventEntry, FeedbackEntry, LogEntry


@dataclass(frozen=True)
class CheckedAnswers:
    """Checked cascade answers in a log: how many, how many escalated, and the mean
    feedback on the answers kept and on the answers escalated to (None: no feedback).
    ``verdicts``: decision id -> whether its (last) check escalated."""

    checked: int
    escalated: int
    kept_quality: float | None
    escalated_quality: float | None
    verdicts: dict[str, bool] = field(default_factory=dict)

    @property
    def escalation_rate(self) -> float | None:
        return self.escalated / self.checked if self.checked else None


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def checked_answers(
    entries: Sequence[LogEntry], events: Sequence[EventEntry], feedback: Sequence[FeedbackEntry]
) -> CheckedAnswers:
    """Checks of ``entries`` with a cascade plan: the last escalation event of each such
    decision is its verdict (a check repeated after an edit replaces the earlier one).
    Feedback counts for a kept answer when it names the decision's model (or no model),
    for an escalated one when it names the model escalated to."""
    planned = {e.decision_id: e for e in entries if e.cascade_to is not None}
    last: dict[str, EventEntry] = {}
    for event in sorted(events, key=lambda e: e.created_at):
        if event.kind == "escalation" and event.decision_id in planned:
            last[event.decision_id] = event
    kept: list[float] = []
    lifted: list[float] = []
    for fb in feedback:
        check = last.get(fb.decision_id)
        if check is None:
            continue
        model = fb.model or planned[fb.decision_id].model
        if check.to_model is None and model == planned[fb.decision_id].model:
            kept.append(fb.quality)
        elif check.to_model is not None and model == check.to_model:
            lifted.append(fb.quality)
    verdicts = {d: e.to_model is not None for d, e in last.items()}
    return CheckedAnswers(
        checked=len(verdicts),
        escalated=sum(verdicts.values()),
        kept_quality=_mean(kept),
        escalated_quality=_mean(lifted),
        verdicts=verdicts,
    )


def planned_outcome(
    first_cost: float,
    escalation_cost: float,
    kept_quality: float | None,
    escalated_quality: float | None,
    escalates: float,
) -> tuple[float, float | None]:
    """Expected (cost, quality) of a plan whose check escalates with probability
    ``escalates`` (1 or 0 when this request's own check is known): the first answer's
    cost always, the escalation's that often; quality the mix of the kept and the
    escalated answer's (None when the needed one is unknown)."""
    if not 0 <= escalates <= 1:
        raise ValueError(f"an escalation probability is in 0..1, got {escalates}")
    cost = first_cost + escalates * escalation_cost
    parts = [(1 - escalates, kept_quality), (escalates, escalated_quality)]
    if any(q is None for w, q in parts if w > 0):
        return cost, None
    return cost, sum(w * q for w, q in parts if w > 0 and q is not None)
