"""The explorer's Compare tab: the routed sample against always-flagship and
always-cheapest, per day, with cascade plans on or off at an escalation rate. Costs and
shares are ``simulate``'s (:func:`~modeltriage.learn.simulation.simulate`); quality is
judged as ``tune`` judges it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from modeltriage.core.config import RouterConfig
from modeltriage.core.costs import cheapest_in_tier, model_cost
from modeltriage.core.decision import Verdict
from modeltriage.core.policy import decide
from modeltriage.learn.explore import Settings, applied
from modeltriage.learn.explore_samples import Sample
from modeltriage.learn.simulation import SimulationReport, simulate
from modeltriage.learn.tuning import case_outcome, tier_quality


@dataclass(frozen=True)
class Strategy:
    """One way of serving the sample: its daily cost, quality and share per tier.
    ``quality`` is None without labels or feedback; a routed sample with cascade plans has
    a range, from no plan escalating (``quality_low``) to all escalating."""

    name: str
    cost_per_day_usd: float
    quality: float | None
    tier_share: dict[str, float]
    quality_low: float | None = None


@dataclass(frozen=True)
class Comparison:
    strategies: list[Strategy]
    simulation: SimulationReport
    oracle: str  # why there is no oracle row, when there is none


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


def _verdicts(sample: Sample, config: RouterConfig, plans: bool) -> list[Verdict]:
    intents = dict(sample.explorer.intents)
    if not plans:
        # Plans off: no margin or split-vote plan, and no intent's own plan either.
        config = config.model_copy(
            update={
                "thresholds": config.thresholds.model_copy(
                    update={"cascade_margin": None, "cascade_harder_share": None}
                )
            }
        )
        intents = {k: i.model_copy(update={"cascade": None}) for k, i in intents.items()}
    return [decide(c.neighbours, config, intents, c.input_tokens) for c in sample.found.cases]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def compare(
    sample: Sample,
    settings: Settings,
    *,
    plans: bool,
    escalation_rate: float,
    requests_per_day: int,
) -> Comparison:
    """Routed (at ``settings``), always-flagship and always-cheapest on ``sample``."""
    config = applied(sample.explorer.config, settings)
    verdicts = _verdicts(sample, config, plans)
    report = simulate(sample.rows, verdicts, config, requests_per_day, escalation_rate)
    quality = sample.found.quality
    outcomes = [
        case_outcome(case, verdict, quality)
        for case, verdict in zip(sample.found.cases, verdicts, strict=True)
    ]
    high = _mean([o.quality for o in outcomes if o.quality is not None])
    low = _mean(
        [
            value
            for case, verdict in zip(sample.found.cases, verdicts, strict=True)
            if (value := quality.judge(case, verdict)[0]) is not None
        ]
    )
    cases = sample.found.cases
    cheapest_tier = config.tiers[0]
    output = config.cost.expected_output_tokens
    cheapest_cost = 0.0
    for case in cases:
        spec = cheapest_in_tier(config, cheapest_tier, case.input_tokens, output)
        cheapest_cost += case.costs.get(spec.name, model_cost(spec, case.input_tokens, output))
    scale = requests_per_day / len(cases)
    strategies = [
        Strategy(
            "routed",
            report.daily_cost_usd,
            high,
            report.tier_share,
            quality_low=low if low != high else None,
        ),
        Strategy(
            "always-flagship",
            report.flagship_daily_cost_usd,
            _none_if_nan(tier_quality(cases, config, quality, config.flagship_tier)),
            {config.flagship_tier: 1.0},
        ),
        Strategy(
            "always-cheapest",
            cheapest_cost * scale,
            _none_if_nan(tier_quality(cases, config, quality, cheapest_tier)),
            {cheapest_tier: 1.0},
        ),
    ]
    oracle = "No per-model outcomes in this sample: the oracle needs an outcomes file"
    return Comparison(strategies, report, oracle)
