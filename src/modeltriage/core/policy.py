"""Pure routing policy: neighbours + router config -> verdict. No I/O, no clocks.

Every function here is deterministic in its arguments so it can be table-tested.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from modeltriage.core.config import DIFFICULTIES, Aggregation, Difficulty, ModelSpec, RouterConfig
from modeltriage.core.decision import CascadePlan, Message, Neighbour, Verdict
from modeltriage.core.intents import Intent

# Temperature of the similarity-weighted vote: cosine gaps between intents are a few
# hundredths, so a small temperature keeps the nearest exemplars dominant.
VOTE_TEMPERATURE = 0.05


@dataclass(frozen=True)
class IntentScore:
    intent: str
    score: float


def score_intents(neighbours: Sequence[Neighbour], aggregation: Aggregation) -> list[IntentScore]:
    """Score each intent present among ``neighbours``, best first (ties by name)."""
    by_intent: dict[str, list[float]] = {}
    for n in neighbours:
        by_intent.setdefault(n.intent, []).append(n.similarity)
    if not by_intent:
        return []
    floor = min(n.similarity for n in neighbours)
    scores: dict[str, float] = {}
    if aggregation == "max":
        scores = {intent: max(sims) for intent, sims in by_intent.items()}
    elif aggregation == "mean_top2":
        # An intent with one neighbour in the top k has its second below the k-th
        # similarity; the k-th stands in for it, an upper bound.
        for intent, sims in by_intent.items():
            top = sorted(sims, reverse=True)[:2]
            scores[intent] = (top[0] + (top[1] if len(top) > 1 else floor)) / 2
    elif aggregation == "vote":
        best = max(n.similarity for n in neighbours)
        weights = {
            intent: sum(math.exp((s - best) / VOTE_TEMPERATURE) for s in sims)
            for intent, sims in by_intent.items()
        }
        total = sum(weights.values())
        scores = {intent: w / total for intent, w in weights.items()}
    else:  # pragma: no cover - pydantic restricts the literal
        raise ValueError(f"unknown aggregation {aggregation!r}")
    return sorted(
        (IntentScore(i, s) for i, s in scores.items()), key=lambda x: (-x.score, x.intent)
    )


def runner_up_floor(neighbours: Sequence[Neighbour], aggregation: Aggregation) -> float:
    """Score of an intent absent from the neighbours, at most: used when only one
    intent was retrieved, so the margin is a lower bound rather than undefined."""
    if aggregation == "vote":
        return 0.0
    return min(n.similarity for n in neighbours)


def difficulty_shares(neighbours: Sequence[Neighbour]) -> dict[Difficulty, float]:
    """Share of the vote per difficulty, weighted like the intent vote so the nearest
    exemplars dominate: one close "easy" override outweighs many distant "hard" ones."""
    if not neighbours:
        raise ValueError("cannot vote a difficulty without neighbours")
    weights = dict.fromkeys(DIFFICULTIES, 0.0)
    best = max(n.similarity for n in neighbours)
    for n in neighbours:
        weights[n.difficulty] += math.exp((n.similarity - best) / VOTE_TEMPERATURE)
    total = sum(weights.values())
    return {d: w / total for d, w in weights.items()}


def vote_difficulty(neighbours: Sequence[Neighbour], confidence: float | None = None) -> Difficulty:
    """The voted difficulty. Without ``confidence``: the most voted, a tie going to the
    harder. With it: the easiest difficulty whose cumulative share (easy, then easy and
    moderate) reaches ``confidence`` -- raising it sends doubtful requests up a tier."""
    shares = difficulty_shares(neighbours)
    if confidence is None:
        return max(DIFFICULTIES, key=lambda d: (shares[d], DIFFICULTIES.index(d)))
    cumulative = 0.0
    for difficulty in DIFFICULTIES:
        cumulative += shares[difficulty]
        # A hair of tolerance so that confidence 1.0 is reachable despite rounding.
        if cumulative >= confidence - 1e-9:
            return difficulty
    return DIFFICULTIES[-1]


def estimate_tokens(text: str, chars_per_token: float) -> int:
    return max(1, math.ceil(len(text) / chars_per_token))


def model_cost(spec: ModelSpec, input_tokens: int, output_tokens: int) -> float:
    return (
        input_tokens * spec.input_usd_per_mtok + output_tokens * spec.output_usd_per_mtok
    ) / 1_000_000


def flagship_cost_usd(config: RouterConfig, input_tokens: int) -> float:
    """What always-flagship pays for one request: the flagship tier's cheapest general
    model, with ``cost.expected_output_tokens`` of output. The baseline every saving is
    measured against."""
    output = config.cost.expected_output_tokens
    spec = cheapest_in_tier(config, config.flagship_tier, input_tokens, output)
    return model_cost(spec, input_tokens, output)


def savings(cost: float, baseline: float) -> float:
    """The share of ``baseline`` not spent: ``1 - cost / baseline``; 0.0 when the
    baseline costs nothing."""
    return 1 - cost / baseline if baseline > 0 else 0.0


def _by_cost(models: Sequence[ModelSpec], input_tokens: int, output_tokens: int) -> list[ModelSpec]:
    # sorted() is stable, so equal prices keep the config's order.
    return sorted(models, key=lambda m: model_cost(m, input_tokens, output_tokens))


def cheapest_in_tier(
    config: RouterConfig, tier: str, input_tokens: int, output_tokens: int
) -> ModelSpec:
    general = [m for m in config.models if m.tier == tier and not m.specialised]
    return _by_cost(general, input_tokens, output_tokens)[0]


def fallback_chain(
    config: RouterConfig, model: ModelSpec, input_tokens: int, output_tokens: int
) -> list[str]:
    """Explicit chain from the config, else: the same tier's other general models by
    cost, then the cheapest general model of each stronger tier."""
    if model.name in config.fallbacks:
        return list(config.fallbacks[model.name])
    same_tier = [
        m for m in config.models if m.tier == model.tier and not m.specialised and m != model
    ]
    chain = [m.name for m in _by_cost(same_tier, input_tokens, output_tokens)]
    for tier in config.tiers[config.tiers.index(model.tier) + 1 :]:
        chain.append(cheapest_in_tier(config, tier, input_tokens, output_tokens).name)
    return chain


def conversation_text(messages: Sequence[Message], short_turn_words: int) -> str | None:
    """The text to route for a conversation: its last user turn, after the previous user
    turn when the last one is short ("and in red?" means nothing alone). None when there
    is no user turn with text."""
    turns = [m.content for m in messages if m.role == "user" and m.content.strip()]
    if not turns:
        return None
    last = turns[-1]
    if len(turns) > 1 and len(last.split()) < short_turn_words:
        return f"{turns[-2]} {last}"
    return last


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
        order.extend(m for m in _by_cost(general, input_tokens, output_tokens) if m != target)
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


@dataclass(frozen=True)
class Failover:
    """The next model to try after failures, or None when the chain is exhausted."""

    model: str | None
    reason: str


def next_model(
    chain: Sequence[str], failed: Collection[str], unhealthy: Collection[str]
) -> Failover:
    """The model to try after ``failed`` in ``chain`` (a decision's model, then its
    fallbacks). A chain is tried in order, so models before the last failed one were
    already tried: the answer is the first model after it that has neither failed nor is
    marked unhealthy."""
    failed_positions = [i for i, name in enumerate(chain) if name in failed]
    start = failed_positions[-1] + 1 if failed_positions else 0
    skipped: list[str] = []
    for name in chain[start:]:
        if name in failed:
            continue
        if name in unhealthy:
            skipped.append(name)
            continue
        after = f"after {chain[start - 1]} failed" if start else "none of the chain failed"
        also = f"; skipped unhealthy {', '.join(skipped)}" if skipped else ""
        return Failover(name, f"next in the chain {after}{also}")
    also = f" (unhealthy: {', '.join(skipped)})" if skipped else ""
    return Failover(None, f"no model left in the chain{also}")


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
    second = request.second_opinion
    notes = ""
    if second is not None and second in constraints.unhealthy:
        notes = f"; second opinion {second} is marked unhealthy, so the answer is checked alone"
        second = None
    second_cost = 0.0
    if second is not None:
        second_cost = model_cost(config.model(second), input_tokens, output_tokens)
        notes = f"; ask {second} too and escalate unless both answers agree"
    plan = CascadePlan(
        escalate_to=to.name,
        tier=to.tier,
        trigger=request.trigger,
        estimated_cost_usd=model_cost(to, input_tokens, output_tokens),
        second_opinion=second,
        second_opinion_cost_usd=second_cost,
    )
    return plan, (
        f"{request.why}: try {first.name} first, escalate to {to.name} ({to.tier}) "
        f"if its answer fails the check{notes}"
    )


def decide(
    neighbours: Sequence[Neighbour],
    config: RouterConfig,
    intents: Mapping[str, Intent],
    input_tokens: int,
    constraints: Constraints = NO_CONSTRAINTS,
) -> Verdict:
    """Turn the nearest exemplars into a verdict.

    Order of checks: a pipeline step (routes without the exemplars), no match (top
    similarity below the floor), then low margin (best intent barely ahead of the
    runner-up), then the intent's own route. Whatever is chosen then gives way to the
    first healthy model within budget (:func:`apply_constraints`).
    """
    output_tokens = config.cost.expected_output_tokens
    thresholds = config.thresholds
    aggregation = config.scoring.aggregation
    confidence = max((n.similarity for n in neighbours), default=-1.0)

    def verdict(
        model: ModelSpec,
        reason: str,
        explanation: str,
        *,
        plan_request: PlanRequest | None = None,
        **fields: object,
    ) -> Verdict:
        floor = constraints.min_tier
        if floor is not None and config.tiers.index(model.tier) < config.tiers.index(floor):
            # A conversation does not drop to a weaker tier mid-way (conversation.sticky).
            model = cheapest_in_tier(config, floor, input_tokens, output_tokens)
            explanation = f"{explanation}; the conversation stays at tier {floor} -> {model.name}"
        choice = apply_constraints(config, model, input_tokens, output_tokens, constraints)
        chosen = choice.model
        if choice.notes:
            explanation = f"{explanation}; {'; '.join(choice.notes)}"
        plan = None
        if plan_request is not None and not choice.over_budget:
            plan, why = plan_cascade(
                config, chosen, plan_request, input_tokens, output_tokens, constraints
            )
            explanation = f"{explanation}; {why}"
            if plan is not None:
                reason = "cascade"
        return Verdict.model_validate(
            {
                "tier": chosen.tier,
                "model": chosen.name,
                "fallbacks": choice.fallbacks,
                "cascade": plan,
                "confidence": round(confidence, 6),
                "reason": "over_budget" if choice.over_budget else reason,
                "explanation": explanation,
                "estimated_cost_usd": model_cost(chosen, input_tokens, output_tokens),
                "input_tokens": input_tokens,
                **fields,
            }
        )

    if constraints.step is not None:
        step = config.steps.get(constraints.step)
        if step is None:
            raise ValueError(f"unknown step {constraints.step!r}")
        if step.tier is not None:
            target = cheapest_in_tier(config, step.tier, input_tokens, output_tokens)
            return verdict(
                target,
                "step",
                f"step {constraints.step!r} -> tier {step.tier} -> cheapest model "
                f"{target.name} (exemplars not consulted)",
                intent=None,
                runner_up=None,
                difficulty=None,
                margin=None,
                cascaded=False,
            )
        assert step.intent is not None  # Step's validator: exactly one of tier, intent
        intent = intents[step.intent]
        if intent.model is not None:
            target = config.model(intent.model)
            route = f"specialised model {target.name}"
        else:
            tier = config.tier_for(intent.difficulty)
            target = cheapest_in_tier(config, tier, input_tokens, output_tokens)
            route = f"difficulty {intent.difficulty} -> tier {tier} -> cheapest model {target.name}"
        return verdict(
            target,
            "step",
            f"step {constraints.step!r} -> intent {intent.name!r}; {route} "
            "(exemplars not consulted)",
            intent=intent.name,
            runner_up=None,
            difficulty=intent.difficulty,
            margin=None,
            cascaded=False,
        )

    no_match = not neighbours or (
        thresholds.min_similarity is not None and confidence < thresholds.min_similarity
    )
    if no_match:
        if config.no_match.model is not None:
            target = config.model(config.no_match.model)
        else:
            tier = config.flagship_tier if config.no_match.tier is None else config.no_match.tier
            target = cheapest_in_tier(config, tier, input_tokens, output_tokens)
        floor = thresholds.min_similarity
        why = (
            "no exemplars to compare with"
            if not neighbours
            else f"top similarity {confidence:.3f} < min_similarity {floor}"
        )
        return verdict(
            target,
            "no_match",
            f"{why}: no intent matches; sent to the no-match default {target.name} ({target.tier})",
            intent=None,
            runner_up=None,
            difficulty=None,
            margin=None,
            cascaded=True,
        )

    ranked = score_intents(neighbours, aggregation)
    best = ranked[0]
    runner_up = ranked[1] if len(ranked) > 1 else None
    second = runner_up.score if runner_up is not None else runner_up_floor(neighbours, aggregation)
    margin = best.score - second
    intent = intents[best.intent]
    voters = [n for n in neighbours if n.intent == best.intent]
    difficulty = vote_difficulty(voters, thresholds.difficulty_confidence)
    matched = f"intent {best.intent!r} (score {best.score:.3f}, margin {margin:.3f} over " + (
        f"{runner_up.intent!r})" if runner_up is not None else "any other intent)"
    )
    common: dict[str, Any] = {
        "intent": best.intent,
        "runner_up": None if runner_up is None else runner_up.intent,
        "difficulty": difficulty,
        "margin": round(margin, 6),
    }

    # Unanimous neighbours never cascade on margin: with no runner-up retrieved, the
    # margin is only a lower bound (zero with top_k 1), not evidence of a close call.
    if thresholds.margin is not None and runner_up is not None and margin < thresholds.margin:
        target = cheapest_in_tier(config, config.flagship_tier, input_tokens, output_tokens)
        return verdict(
            target,
            "low_margin",
            f"{matched} is below margin {thresholds.margin}: too close to call, "
            f"sent straight to flagship {target.name}",
            cascaded=True,
            **common,
        )

    plan_request = None
    if intent.cascade is not None:
        # The intent's own plan (say, learned from outcomes with answers) is more
        # specific than a margin or a split vote.
        named = intent.cascade.escalate_to
        plan_request = PlanRequest(
            config.flagship_tier if named is None else config.model(named).tier,
            "intent",
            f"intent {best.intent!r} plans a cascade",
            model=named,
            second_opinion=intent.cascade.second_opinion,
        )
    elif thresholds.cascade_margin is not None and margin < thresholds.cascade_margin:
        plan_request = PlanRequest(
            config.flagship_tier,
            "margin",
            f"margin {margin:.3f} < cascade_margin {thresholds.cascade_margin}",
        )
    elif thresholds.cascade_harder_share is not None:
        harder = harder_difficulty(voters, difficulty, thresholds.cascade_harder_share)
        if harder is not None:
            plan_request = PlanRequest(
                config.tier_for(harder),
                "difficulty",
                f"at least {thresholds.cascade_harder_share:g} of the vote says harder "
                f"than {difficulty} ({harder})",
            )

    # The specialised model serves the intent's own difficulty; an exemplar override
    # that wins the vote (say, a trivial coding question) routes by tier instead.
    if intent.model is not None and difficulty == intent.difficulty:
        target = config.model(intent.model)
        return verdict(
            target,
            "specialised_model",
            f"matched {matched}; the intent names specialised model {target.name}",
            plan_request=plan_request,
            cascaded=False,
            **common,
        )

    tier = config.tier_for(difficulty)
    target = cheapest_in_tier(config, tier, input_tokens, output_tokens)
    return verdict(
        target,
        "confident",
        f"matched {matched}; difficulty {difficulty} -> tier {tier} -> "
        f"cheapest model {target.name}",
        plan_request=plan_request,
        cascaded=False,
        **common,
    )
