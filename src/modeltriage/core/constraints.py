"""Per-request constraints (pipeline step, minimum tier, budgets, unhealthy models) and
replacing a routed model by the first eligible substitute."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from modeltriage.core.config import ModelSpec, RouterConfig
from modeltriage.core.costs import by_cost, fallback_chain, model_cost


@dataclass(frozen=True)
class Constraints:
    """What one request allows beyond its exemplars: a pipeline step, budgets, and the
    models currently marked unhealthy. The default constrains nothing."""

    step: str | None = None
    min_tier: str | None = None
    max_latency_ms: float | None = None
    max_cost_usd: float | None = None
    unhealthy: frozenset[str] = field(default_factory=frozenset)

    @property
    def has_budget(self) -> bool:
        return self.max_latency_ms is not None or self.max_cost_usd is not None


NO_CONSTRAINTS = Constraints()


def budget_problem(
    spec: ModelSpec, input_tokens: int, output_tokens: int, constraints: Constraints
) -> str | None:
    """Why ``spec`` breaks the request's budgets, or None when it fits them."""
    limit = constraints.max_latency_ms
    if limit is not None:
        # An unknown latency cannot be promised to fit: it is not eligible.
        if spec.typical_latency_ms is None:
            return f"{spec.name} has no typical_latency_ms (unknown latency)"
        if spec.typical_latency_ms > limit:
            return (
                f"{spec.name} typical latency {spec.typical_latency_ms:g} ms > "
                f"max_latency_ms {limit:g}"
            )
    cap = constraints.max_cost_usd
    if cap is not None:
        cost = model_cost(spec, input_tokens, output_tokens)
        if cost > cap:
            return f"{spec.name} estimated cost ${cost:.6g} > max_cost_usd {cap:g}"
    return None


def budget_overshoot(
    spec: ModelSpec, input_tokens: int, output_tokens: int, constraints: Constraints
) -> float:
    """How far ``spec`` is from the budgets: the largest ratio of value to limit (at most
    1.0 when it fits); an unknown latency under a latency budget is infinitely far."""
    ratios = [0.0]
    if constraints.max_latency_ms is not None:
        latency = spec.typical_latency_ms
        ratios.append(math.inf if latency is None else latency / constraints.max_latency_ms)
    if constraints.max_cost_usd is not None:
        cost = model_cost(spec, input_tokens, output_tokens)
        ratios.append(cost / constraints.max_cost_usd)
    return max(ratios)


def substitutes(
    config: RouterConfig, target: ModelSpec, input_tokens: int, output_tokens: int
) -> list[ModelSpec]:
    """``target``, then the models that may replace it, in order: the same tier's other
    general models by cost, then each stronger tier's (nearest first) by cost, then each
    cheaper tier's (nearest first) by cost. Stronger before cheaper: quality is only
    given up when no stronger model is eligible."""
    position = config.tiers.index(target.tier)
    tiers = [
        config.tiers[position],
        *config.tiers[position + 1 :],
        *reversed(config.tiers[:position]),
    ]
    order = [target]
    for tier in tiers:
        general = [m for m in config.models if m.tier == tier and not m.specialised]
        order.extend(m for m in by_cost(general, input_tokens, output_tokens) if m != target)
    return order


@dataclass(frozen=True)
class Choice:
    model: ModelSpec
    fallbacks: list[str]
    notes: list[str]
    over_budget: bool


def apply_constraints(
    config: RouterConfig,
    target: ModelSpec,
    input_tokens: int,
    output_tokens: int,
    constraints: Constraints,
) -> Choice:
    """Replace ``target`` by the first eligible model (healthy, within budget) of
    :func:`substitutes`; drop ineligible models from the fallbacks. When no healthy model
    fits the budget, the closest to it is chosen and ``over_budget`` says so."""
    notes: list[str] = []
    unhealthy = constraints.unhealthy
    candidates = substitutes(config, target, input_tokens, output_tokens)
    healthy = [m for m in candidates if m.name not in unhealthy]
    if not healthy:
        # Refusing to route helps nobody: the caller's failover still has the chain.
        notes.append("every candidate model is marked unhealthy, so health is ignored")
        healthy, unhealthy = candidates, frozenset()
    elif target.name in unhealthy:
        notes.append(f"{target.name} is marked unhealthy")

    def problem(spec: ModelSpec) -> str | None:
        return budget_problem(spec, input_tokens, output_tokens, constraints)

    eligible = [m for m in healthy if problem(m) is None]
    over_budget = not eligible
    if over_budget:
        # min() keeps the first of equals, so ties follow the substitution order.
        chosen = min(
            healthy, key=lambda m: budget_overshoot(m, input_tokens, output_tokens, constraints)
        )
        why = problem(chosen)
        notes.append(
            f"budget: no healthy model fits ({_budget_text(constraints)}); {chosen.name} "
            f"({chosen.tier}) is the closest ({why})"
        )
    else:
        chosen = eligible[0]
        target_problem = problem(target)
        if target_problem is not None:
            notes.append(f"budget: {target_problem}")
        if chosen != target:
            notes.append(f"using {chosen.name} ({chosen.tier}) instead")
    chain = fallback_chain(config, chosen, input_tokens, output_tokens)
    fallbacks = [
        name
        for name in chain
        if name not in unhealthy
        # Over budget already, a fallback is better than none; within it, keep within it.
        and (over_budget or problem(config.model(name)) is None)
    ]
    dropped = [name for name in chain if name in unhealthy and name != target.name]
    if dropped:
        notes.append(f"unhealthy {', '.join(dropped)} dropped from the fallbacks")
    return Choice(chosen, fallbacks, notes, over_budget)


def _budget_text(constraints: Constraints) -> str:
    parts = []
    if constraints.max_latency_ms is not None:
        parts.append(f"max_latency_ms {constraints.max_latency_ms:g}")
    if constraints.max_cost_usd is not None:
        parts.append(f"max_cost_usd {constraints.max_cost_usd:g}")
    return ", ".join(parts)
