"""What routing a traffic sample costs per day, against sending all of it to the flagship.

Pure arithmetic over decisions already made: the router is not called here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from modeltriage.core.config import DIFFICULTIES, Difficulty, RouterConfig
from modeltriage.core.costs import (
    cheapest_in_tier,
    estimate_tokens,
    flagship_cost_usd,
    savings,
)
from modeltriage.core.decision import Verdict
from modeltriage.errors import ConfigError
from modeltriage.learn.jsonl import read_jsonl


@dataclass(frozen=True)
class TrafficRow:
    text: str
    expected_intent: str | None = None
    expected_difficulty: Difficulty | None = None


def read_traffic(path: Path | str) -> list[TrafficRow]:
    """Read ``{"text": str, "expected_intent": str | null (optional)}`` lines."""
    source = Path(path)
    rows = []
    for number, data in read_jsonl(source, 'an object with a string "text"', "traffic file"):
        if not isinstance(data.get("text"), str):
            raise ConfigError('expected an object with a string "text"', source, number)
        expected = data.get("expected_intent")
        difficulty = data.get("expected_difficulty")
        if difficulty is not None and difficulty not in DIFFICULTIES:
            raise ConfigError(
                f"expected_difficulty must be one of {', '.join(DIFFICULTIES)} or null",
                source,
                number,
            )
        rows.append(
            TrafficRow(data["text"], expected if isinstance(expected, str) else None, difficulty)
        )
    if not rows:
        raise ConfigError("traffic file has no requests", source)
    return rows


@dataclass(frozen=True)
class SimulationReport:
    requests_per_day: int
    sample_size: int
    flagship_model: str
    daily_cost_usd: float
    flagship_daily_cost_usd: float
    savings_share: float
    cost_per_request_usd: float
    flagship_cost_per_request_usd: float
    tier_share: dict[str, float]
    model_share: dict[str, float]
    reason_share: dict[str, float]
    cascade_rate: float
    intent_agreement: float | None
    under_routed: float | None
    # Decisions with a cascade plan: the cheap answer is checked and, at escalation_rate,
    # the plan's stronger model is paid for too.
    planned_rate: float = 0.0
    escalation_rate: float = 1.0
    daily_cost_no_escalation_usd: float = 0.0
    daily_cost_all_escalate_usd: float = 0.0
    under_routed_without_plan: float | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _shares(counter: Counter[str], total: int) -> dict[str, float]:
    return {key: count / total for key, count in counter.most_common()}


def simulate(
    rows: Sequence[TrafficRow],
    decisions: Sequence[Verdict],
    config: RouterConfig,
    requests_per_day: int,
    escalation_rate: float = 1.0,
) -> SimulationReport:
    """Scale the sample's routed cost to ``requests_per_day``; the sample is the mix.

    A decision with a cascade plan costs its model plus, with probability
    ``escalation_rate``, the plan's model: 1.0 (the default) is the upper bound.
    """
    if len(rows) != len(decisions) or not rows:
        raise ValueError("need one decision per traffic row, and at least one row")
    if not 0.0 <= escalation_rate <= 1.0:  # also refuses NaN
        raise ValueError(f"escalation_rate must be from 0 to 1, got {escalation_rate}")
    # A plan's second opinion is asked every time, escalated or not.
    first = sum(
        d.estimated_cost_usd + (0.0 if d.cascade is None else d.cascade.second_opinion_cost_usd)
        for d in decisions
    )
    escalations = sum(d.cascade.estimated_cost_usd for d in decisions if d.cascade is not None)
    routed = first + escalation_rate * escalations
    tokens = [estimate_tokens(row.text, config.cost.chars_per_token) for row in rows]
    flagship = sum(flagship_cost_usd(config, n) for n in tokens)
    # Named after the last request's: which flagship model is cheapest can depend on length.
    output_tokens = config.cost.expected_output_tokens
    flagship_name = cheapest_in_tier(config, config.flagship_tier, tokens[-1], output_tokens).name
    n = len(rows)
    labelled = [(r, d) for r, d in zip(rows, decisions, strict=True) if r.expected_intent]
    agreement = (
        sum(r.expected_intent == d.intent for r, d in labelled) / len(labelled)
        if labelled
        else None
    )
    graded = [(r, d) for r, d in zip(rows, decisions, strict=True) if r.expected_difficulty]
    # Sent to a weaker tier than the request's labelled difficulty calls for: the
    # quality risk that the savings are bought with.
    weak = [
        (r, d)
        for r, d in graded
        if config.tiers.index(d.tier) < config.tiers.index(config.tier_for(r.expected_difficulty))  # type: ignore[arg-type]
    ]
    under = len(weak) / len(graded) if graded else None
    # Those a plan leaves no second chance: the answer check cannot escalate them.
    unplanned = sum(d.cascade is None for _, d in weak) / len(graded) if graded else None
    scale = requests_per_day / n
    return SimulationReport(
        requests_per_day=requests_per_day,
        sample_size=n,
        flagship_model=flagship_name,
        daily_cost_usd=routed * scale,
        flagship_daily_cost_usd=flagship * scale,
        savings_share=savings(routed, flagship),
        cost_per_request_usd=routed / n,
        flagship_cost_per_request_usd=flagship / n,
        tier_share=_shares(Counter(d.tier for d in decisions), n),
        model_share=_shares(Counter(d.model for d in decisions), n),
        reason_share=_shares(Counter(d.reason for d in decisions), n),
        cascade_rate=sum(d.cascaded for d in decisions) / n,
        intent_agreement=agreement,
        under_routed=under,
        planned_rate=sum(d.cascade is not None for d in decisions) / n,
        escalation_rate=escalation_rate,
        daily_cost_no_escalation_usd=first * scale,
        daily_cost_all_escalate_usd=(first + escalations) * scale,
        under_routed_without_plan=unplanned,
    )


def format_report(report: SimulationReport) -> str:
    def pct(x: float) -> str:
        return f"{100 * x:5.1f}%"

    lines = [
        f"{report.requests_per_day:,} requests/day, mix from a sample of {report.sample_size}",
        f"  routed:        ${report.daily_cost_usd:>12,.2f}/day  "
        f"(${report.cost_per_request_usd:.5f}/request)",
        f"  all-flagship:  ${report.flagship_daily_cost_usd:>12,.2f}/day  "
        f"(${report.flagship_cost_per_request_usd:.5f}/request on {report.flagship_model})",
        f"  savings:       {pct(report.savings_share)}  "
        f"(${report.flagship_daily_cost_usd - report.daily_cost_usd:,.2f}/day)",
        f"  cascade rate:  {pct(report.cascade_rate)}  (straight to a stronger tier)",
    ]
    if report.planned_rate:
        flagship = report.flagship_daily_cost_usd

        def bound(cost: float) -> str:
            saved = pct(savings(cost, flagship)).strip() if flagship > 0 else "-"
            return f"${cost:>12,.2f}/day  (savings {saved})"

        lines += [
            f"  cascade plans: {pct(report.planned_rate)}  (cheap answer first, checked; "
            f"counted as escalated at {pct(report.escalation_rate).strip()})",
            f"    if none escalates:  {bound(report.daily_cost_no_escalation_usd)}",
            f"    if all escalate:    {bound(report.daily_cost_all_escalate_usd)}",
        ]
    if report.intent_agreement is not None:
        lines.append(f"  intent agrees with the sample's label: {pct(report.intent_agreement)}")
    if report.under_routed is not None:
        lines.append(
            f"  sent to a weaker tier than the label's difficulty: {pct(report.under_routed)}"
        )
    if report.planned_rate and report.under_routed_without_plan is not None:
        lines.append(
            f"    of which without a cascade plan: {pct(report.under_routed_without_plan)}"
        )
    lines.append(
        "  share per tier:   " + ", ".join(f"{k} {pct(v)}" for k, v in report.tier_share.items())
    )
    lines.append(
        "  share per model:  " + ", ".join(f"{k} {pct(v)}" for k, v in report.model_share.items())
    )
    lines.append(
        "  share per reason: " + ", ".join(f"{k} {pct(v)}" for k, v in report.reason_share.items())
    )
    return "\n".join(lines)
