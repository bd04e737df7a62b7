"""Cascade plans: when a verdict's model should answer first and be checked, and the
stronger model to escalate to when its answer fails the check."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from modeltriage.core.config import DIFFICULTIES, Difficulty, ModelSpec, RouterConfig
from modeltriage.core.constraints import Constraints, apply_constraints
from modeltriage.core.costs import cheapest_in_tier, model_cost
from modeltriage.core.decision import CascadePlan, Neighbour
from modeltriage.core.scoring import difficulty_shares


def harder_difficulty(
    neighbours: Sequence[Neighbour], difficulty: Difficulty, share: float
) -> Difficulty | None:
    """The harder difficulty to escalate to when at least ``share`` of the vote went to
    difficulties above ``difficulty`` (the most voted of them, a tie to the harder);
    None when fewer did or ``neighbours`` is empty."""
    if not neighbours:
        return None
    shares = difficulty_shares(neighbours)
    harder = DIFFICULTIES[DIFFICULTIES.index(difficulty) + 1 :]
    if not harder or sum(shares[d] for d in harder) < share:
        return None
    return max(reversed(harder), key=lambda d: shares[d])


@dataclass(frozen=True)
class PlanRequest:
    """Why a verdict should carry a cascade plan, and to which tier (or model)."""

    tier: str
    trigger: Literal["margin", "difficulty", "intent"]
    why: str
    model: str | None = None
    second_opinion: str | None = None
    also_agree: tuple[str, ...] = ()  # further opinions that must agree too


def plan_cascade(
    config: RouterConfig,
    first: ModelSpec,
    request: PlanRequest,
    input_tokens: int,
    output_tokens: int,
    constraints: Constraints,
) -> tuple[CascadePlan | None, str]:
    """The plan for a verdict whose model is ``first``, and the sentence explaining it
    (or why there is none: nothing stronger, or nothing stronger within budget)."""
    tiers = config.tiers
    if tiers.index(request.tier) <= tiers.index(first.tier):
        return None, f"{request.why}, but {first.name} is already at tier {first.tier}"
    if request.model is not None:
        target = config.model(request.model)
    else:
        target = cheapest_in_tier(config, request.tier, input_tokens, output_tokens)
    choice = apply_constraints(config, target, input_tokens, output_tokens, constraints)
    to = choice.model
    if choice.over_budget or tiers.index(to.tier) <= tiers.index(first.tier):
        return None, f"{request.why}, but no stronger healthy model fits the budget"
    second, more, notes = _opinions(request, constraints)
    second_cost = sum(
        model_cost(config.model(m), input_tokens, output_tokens)
        for m in (*([] if second is None else [second]), *more)
    )
    plan = CascadePlan(
        escalate_to=to.name,
        tier=to.tier,
        trigger=request.trigger,
        estimated_cost_usd=model_cost(to, input_tokens, output_tokens),
        second_opinion=second,
        second_opinion_cost_usd=second_cost,
        also_agree=list(more),
    )
    return plan, (
        f"{request.why}: try {first.name} first, escalate to {to.name} ({to.tier}) "
        f"if its answer fails the check{notes}"
    )


def _opinions(
    request: PlanRequest, constraints: Constraints
) -> tuple[str | None, tuple[str, ...], str]:
    """The healthy opinions a plan asks for (the second, then the ones that must agree
    too) and the explanation's note. An unhealthy opinion is dropped, not replaced."""
    asked = [m for m in (request.second_opinion, *request.also_agree) if m is not None]
    healthy = [m for m in asked if m not in constraints.unhealthy]
    dropped = [m for m in asked if m in constraints.unhealthy]
    notes = ""
    if dropped:
        alone = "" if healthy else ", so the answer is checked alone"
        which = "second opinion {} is" if len(dropped) == 1 else "opinions {} are"
        notes = f"; {which.format(', '.join(dropped))} marked unhealthy{alone}"
    if len(healthy) == 1:
        notes += f"; ask {healthy[0]} too and escalate unless both answers agree"
    elif healthy:
        notes += f"; ask {', '.join(healthy)} too and escalate unless all answers agree"
    return (healthy[0] if healthy else None), tuple(healthy[1:]), notes
