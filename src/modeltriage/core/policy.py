"""Pure routing policy: neighbours + router config -> verdict. No I/O, no clocks.

:func:`decide` runs the checks in order, each a named step below; scoring, costs,
constraints and cascade plans live in their own modules. Every function is deterministic
in its arguments so it can be table-tested.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modeltriage.core.cascade import PlanRequest, harder_difficulty, plan_cascade
from modeltriage.core.config import Difficulty, ModelSpec, RouterConfig, Thresholds
from modeltriage.core.constraints import NO_CONSTRAINTS, Constraints, apply_constraints
from modeltriage.core.costs import cheapest_in_tier, model_cost
from modeltriage.core.decision import Neighbour, Verdict
from modeltriage.core.intents import Intent
from modeltriage.core.oos_score import OosScore, explain_score
from modeltriage.core.out_of_scope import explain_floor
from modeltriage.core.scoring import (
    IntentScore,
    intent_margin,
    score_intents,
    vote_difficulty,
)

# Verdict fields of a decision that consulted no intent (a step without one, no match).
_NO_INTENT: dict[str, Any] = {
    "intent": None,
    "runner_up": None,
    "difficulty": None,
    "margin": None,
}


@dataclass(frozen=True)
class _Request:
    """What every step needs to know about the request being decided."""

    config: RouterConfig
    input_tokens: int
    output_tokens: int
    constraints: Constraints
    confidence: float  # similarity of the nearest exemplar, -1.0 without neighbours
    oos_floor: float | None  # the index's calibrated out-of-scope floor, if any
    # The request's combined out-of-scope score when the floor is on it (None: the
    # floor is on the top similarity, ``confidence``).
    oos_score: OosScore | None = None

    def cheapest(self, tier: str) -> ModelSpec:
        return cheapest_in_tier(self.config, tier, self.input_tokens, self.output_tokens)


@dataclass(frozen=True)
class _Match:
    """The best intent among the neighbours and how clearly it won."""

    best: IntentScore
    runner_up: IntentScore | None
    margin: float
    intent: Intent
    voters: list[Neighbour]  # the best intent's neighbours, which vote its difficulty
    difficulty: Difficulty
    summary: str  # "intent 'x' (score .., margin .. over 'y')", for explanations

    @property
    def fields(self) -> dict[str, Any]:
        return {
            "intent": self.best.intent,
            "runner_up": None if self.runner_up is None else self.runner_up.intent,
            "difficulty": self.difficulty,
            "margin": round(self.margin, 6),
        }


def decide(
    neighbours: Sequence[Neighbour],
    config: RouterConfig,
    intents: Mapping[str, Intent],
    input_tokens: int,
    constraints: Constraints = NO_CONSTRAINTS,
    oos_floor: float | None = None,
    oos_score: OosScore | None = None,
) -> Verdict:
    """Turn the nearest exemplars into a verdict.

    Order of checks: a pipeline step (routes without the exemplars), no match (top
    similarity below min_similarity, or below ``oos_floor``, the out-of-scope floor the
    index calibrated on held-out exemplars; compared with ``oos_score`` when the index puts
    its floor on the combined score), then low margin (best intent barely ahead of the
    runner-up), then the intent's own route. Whatever is chosen then gives way to the
    first healthy model within budget (:func:`apply_constraints`).
    """
    request = _Request(
        config,
        input_tokens,
        config.cost.expected_output_tokens,
        constraints,
        max((n.similarity for n in neighbours), default=-1.0),
        oos_floor,
        oos_score,
    )
    if constraints.step is not None:
        return _route_step(request, constraints.step, intents)
    if _no_match(request, neighbours):
        return _route_no_match(request, neighbours)
    match = _match(neighbours, config, intents)
    if _too_close_to_call(match, config.thresholds):
        return _route_low_margin(request, match)
    return _route_intent(request, match, _plan_request(config, match))


def _verdict(
    request: _Request,
    model: ModelSpec,
    reason: str,
    explanation: str,
    fields: Mapping[str, Any],
    plan_request: PlanRequest | None = None,
) -> Verdict:
    """The verdict for ``model`` once the conversation's min_tier, health and budgets
    have had their say, with a cascade plan when ``plan_request`` asks for one."""
    config, constraints = request.config, request.constraints
    min_tier = constraints.min_tier
    if min_tier is not None and config.tiers.index(model.tier) < config.tiers.index(min_tier):
        # A conversation does not drop to a weaker tier mid-way (conversation.sticky).
        model = request.cheapest(min_tier)
        explanation = f"{explanation}; the conversation stays at tier {min_tier} -> {model.name}"
    tokens = (request.input_tokens, request.output_tokens)
    choice = apply_constraints(config, model, *tokens, constraints)
    chosen = choice.model
    if choice.notes:
        explanation = f"{explanation}; {'; '.join(choice.notes)}"
    plan = None
    if plan_request is not None and not choice.over_budget:
        plan, why = plan_cascade(config, chosen, plan_request, *tokens, constraints)
        explanation = f"{explanation}; {why}"
        if plan is not None:
            reason = "cascade"
    return Verdict.model_validate(
        {
            "tier": chosen.tier,
            "model": chosen.name,
            "fallbacks": choice.fallbacks,
            "cascade": plan,
            "confidence": round(request.confidence, 6),
            "reason": "over_budget" if choice.over_budget else reason,
            "explanation": explanation,
            "estimated_cost_usd": model_cost(chosen, *tokens),
            "input_tokens": request.input_tokens,
            **fields,
        }
    )


def _route_step(request: _Request, name: str, intents: Mapping[str, Intent]) -> Verdict:
    """A pipeline step routes to its tier's cheapest model, or as its intent would."""
    config = request.config
    step = config.steps.get(name)
    if step is None:
        raise ValueError(f"unknown step {name!r}")
    if step.tier is not None:
        target = request.cheapest(step.tier)
        return _verdict(
            request,
            target,
            "step",
            f"step {name!r} -> tier {step.tier} -> cheapest model {target.name} "
            "(exemplars not consulted)",
            {**_NO_INTENT, "cascaded": False},
        )
    assert step.intent is not None  # Step's validator: exactly one of tier, intent
    intent = intents[step.intent]
    if intent.model is not None:
        target = config.model(intent.model)
        route = f"specialised model {target.name}"
    else:
        tier = config.tier_for(intent.difficulty)
        target = request.cheapest(tier)
        route = f"difficulty {intent.difficulty} -> tier {tier} -> cheapest model {target.name}"
    return _verdict(
        request,
        target,
        "step",
        f"step {name!r} -> intent {intent.name!r}; {route} (exemplars not consulted)",
        {**_NO_INTENT, "intent": intent.name, "difficulty": intent.difficulty, "cascaded": False},
    )


def _no_match(request: _Request, neighbours: Sequence[Neighbour]) -> bool:
    min_similarity = request.config.thresholds.min_similarity
    return (
        not neighbours
        or (min_similarity is not None and request.confidence < min_similarity)
        or (request.oos_floor is not None and _oos_value(request) < request.oos_floor)
    )


def _oos_value(request: _Request) -> float:
    """What the out-of-scope floor is compared with."""
    return request.confidence if request.oos_score is None else request.oos_score.value


def _no_match_reason(request: _Request, neighbours: Sequence[Neighbour]) -> str:
    """Which floor turned the request away: min_similarity when both did, it is the
    one the user set."""
    config = request.config
    min_similarity = config.thresholds.min_similarity
    if not neighbours:
        return "no exemplars to compare with"
    if min_similarity is not None and request.confidence < min_similarity:
        return f"top similarity {request.confidence:.3f} < min_similarity {min_similarity}"
    assert request.oos_floor is not None  # _no_match: one of the floors turned it away
    share = config.out_of_scope.reject_share
    if request.oos_score is not None:
        return explain_score(request.oos_score, request.oos_floor, share)
    return explain_floor(request.confidence, request.oos_floor, share)


def _route_no_match(request: _Request, neighbours: Sequence[Neighbour]) -> Verdict:
    """Nothing resembles the request: the no-match default (a model, or a tier's cheapest)."""
    config = request.config
    if config.no_match.model is not None:
        target = config.model(config.no_match.model)
    else:
        tier = config.flagship_tier if config.no_match.tier is None else config.no_match.tier
        target = request.cheapest(tier)
    why = _no_match_reason(request, neighbours)
    return _verdict(
        request,
        target,
        "no_match",
        f"{why}: no intent matches; sent to the no-match default {target.name} ({target.tier})",
        {**_NO_INTENT, "cascaded": True},
    )


def _match(
    neighbours: Sequence[Neighbour], config: RouterConfig, intents: Mapping[str, Intent]
) -> _Match:
    """Score the intents, take the best, and vote its difficulty among its neighbours."""
    aggregation = config.scoring.aggregation
    ranked = score_intents(neighbours, aggregation)
    best = ranked[0]
    runner_up = ranked[1] if len(ranked) > 1 else None
    margin = intent_margin(ranked, neighbours, aggregation)
    voters = [n for n in neighbours if n.intent == best.intent]
    over = f"{runner_up.intent!r})" if runner_up is not None else "any other intent)"
    return _Match(
        best=best,
        runner_up=runner_up,
        margin=margin,
        intent=intents[best.intent],
        voters=voters,
        difficulty=vote_difficulty(voters, config.thresholds.difficulty_confidence),
        summary=f"intent {best.intent!r} (score {best.score:.3f}, margin {margin:.3f} over " + over,
    )


def _too_close_to_call(match: _Match, thresholds: Thresholds) -> bool:
    # Unanimous neighbours never cascade on margin: with no runner-up retrieved, the
    # margin is only a lower bound (zero with top_k 1), not evidence of a close call.
    return (
        thresholds.margin is not None
        and match.runner_up is not None
        and match.margin < thresholds.margin
    )


def _route_low_margin(request: _Request, match: _Match) -> Verdict:
    """Too close to call: straight to the flagship tier's cheapest model."""
    target = request.cheapest(request.config.flagship_tier)
    return _verdict(
        request,
        target,
        "low_margin",
        f"{match.summary} is below margin {request.config.thresholds.margin}: too close to "
        f"call, sent straight to flagship {target.name}",
        {**match.fields, "cascaded": True},
    )


def _plan_request(config: RouterConfig, match: _Match) -> PlanRequest | None:
    """Whether the routed model should answer first and be checked, and why: the
    intent's own plan, a moderate margin, or a split difficulty vote, in that order."""
    thresholds = config.thresholds
    plan = match.intent.cascade
    if plan is not None:
        # The intent's own plan (say, learned from outcomes with answers) is more
        # specific than a margin or a split vote.
        named = plan.escalate_to
        return PlanRequest(
            config.flagship_tier if named is None else config.model(named).tier,
            "intent",
            f"intent {match.best.intent!r} plans a cascade",
            model=named,
            second_opinion=plan.second_opinion,
            also_agree=tuple(plan.also_agree),
        )
    if thresholds.cascade_margin is not None and match.margin < thresholds.cascade_margin:
        return PlanRequest(
            config.flagship_tier,
            "margin",
            f"margin {match.margin:.3f} < cascade_margin {thresholds.cascade_margin}",
        )
    share = thresholds.cascade_harder_share
    if share is None:
        return None
    harder = harder_difficulty(match.voters, match.difficulty, share)
    if harder is None:
        return None
    return PlanRequest(
        config.tier_for(harder),
        "difficulty",
        f"at least {share:g} of the vote says harder than {match.difficulty} ({harder})",
    )


def _route_intent(request: _Request, match: _Match, plan_request: PlanRequest | None) -> Verdict:
    """A clear enough match: the intent's specialised model, or its difficulty's tier."""
    intent, difficulty = match.intent, match.difficulty
    fields = {**match.fields, "cascaded": False}
    # The specialised model serves the intent's own difficulty; an exemplar override
    # that wins the vote (say, a trivial coding question) routes by tier instead.
    if intent.model is not None and difficulty == intent.difficulty:
        target = request.config.model(intent.model)
        return _verdict(
            request,
            target,
            "specialised_model",
            f"matched {match.summary}; the intent names specialised model {target.name}",
            fields,
            plan_request,
        )
    tier = request.config.tier_for(difficulty)
    target = request.cheapest(tier)
    return _verdict(
        request,
        target,
        "confident",
        f"matched {match.summary}; difficulty {difficulty} -> tier {tier} -> "
        f"cheapest model {target.name}",
        fields,
        plan_request,
    )
